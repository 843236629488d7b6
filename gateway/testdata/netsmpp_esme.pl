#!/usr/bin/perl
# An ESME written with Perl's Net::SMPP (Debian's libnet-smpp-perl), for
# gateway's TestInteropNetSMPP: it binds as a transceiver, submits one GSM
# and one UCS-2 text asking for receipts, answers the deliver_sm it gets
# until both receipts came, then unbinds. It prints one line per event:
#   bound <system_id>
#   submitted <message_id>
#   receipt <receipted_message_id> <message_state> <short_message>
#   unbound <command_status>
use strict;
use warnings;
use Net::SMPP;

my ($host, $port, $user, $pass, $dst) = @ARGV;
$| = 1;
$SIG{ALRM} = sub { die "timeout\n" };
alarm 20;

my $smpp = Net::SMPP->new_transceiver($host, port => $port,
    system_id => $user, password => $pass, interface_version => 0x34)
    or die "bind: $!\n";
print "bound\n";

my @texts = (
    [0x00, 'hello from Net::SMPP'],
    # UCS-2 (big-endian) of 中文短信
    [0x08, pack('n*', 0x4E2D, 0x6587, 0x77ED, 0x4FE1)],
);
my $want = 0;
for my $t (@texts) {
    my $resp = $smpp->submit_sm(
        source_addr         => '1069',
        destination_addr    => $dst,
        data_coding         => $t->[0],
        registered_delivery => 1,
        short_message       => $t->[1],
    ) or die "submit_sm: ${*$smpp}{smpperror}\n";
    die sprintf("submit_sm: status 0x%08x\n", $resp->{status}) if $resp->{status};
    print "submitted $resp->{message_id}\n";
    $want++;
}

while ($want > 0) {
    my $pdu = $smpp->read_pdu() or die "read_pdu: ${*$smpp}{smpperror}\n";
    if ($pdu->{cmd} == Net::SMPP::CMD_deliver_sm) {
        $smpp->deliver_sm_resp(seq => $pdu->{seq}, message_id => '');
        my $id = $pdu->{receipted_message_id} // '';
        $id =~ s/\0+$//;
        my $state = defined $pdu->{message_state} ? unpack('C', $pdu->{message_state}) : -1;
        print "receipt $id $state $pdu->{short_message}\n";
        $want--;
    } elsif ($pdu->{cmd} == Net::SMPP::CMD_enquire_link) {
        $smpp->enquire_link_resp(seq => $pdu->{seq});
    }
}

my $resp = $smpp->unbind() or die "unbind: ${*$smpp}{smpperror}\n";
printf "unbound 0x%08x\n", $resp->{status};
