#!/usr/bin/perl
# An ESME written with Perl's Net::SMPP (Debian's libnet-smpp-perl), for
# gateway's TestInteropNetSMPP: it binds as a transceiver, submits one GSM
# and one UCS-2 text asking for receipts, one text by data_sm, and a submit_multi when given a
# second destination, answers the deliver_sm it gets until every receipt
# came, queries the first message, then unbinds. It prints one line per
# event:
#   bound
#   submitted <message_id>
#   data <message_id>
#   multi <message_id> <no_unsuccess> [<destination>:<error_status_code> ...]
#   receipt <receipted_message_id> <message_state> <short_message>
#   query <message_id> <command_status> <message_state> <final_date>
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
my $first;
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
    $first //= $resp->{message_id};
    $want++;
}

# data_sm, the text in message_payload, asking for a receipt as well.
{
    my $resp = $smpp->data_sm(
        source_addr         => '1069',
        destination_addr    => $dst,
        registered_delivery => 1,
        message_payload     => 'sent as data sm',
    ) or die "data_sm: ${*$smpp}{smpperror}\n";
    die sprintf("data_sm: status 0x%08x\n", $resp->{status}) if $resp->{status};
    print "data $resp->{message_id}\n";
    $want++;
}

# submit_multi to the destination and to a number the account may not
# reach (the last argument, if any): one message_id, refusals per
# recipient in unsuccess_sme.
if (defined $ARGV[5]) {
    my $resp = $smpp->submit_multi(
        source_addr         => '1069',
        destination_addr    => [$dst, $ARGV[5]],
        registered_delivery => 1,
        short_message       => 'to several',
    ) or die "submit_multi: ${*$smpp}{smpperror}\n";
    die sprintf("submit_multi: status 0x%08x\n", $resp->{status}) if $resp->{status};
    my @refused = map { sprintf '%s:0x%08x', $resp->{destination_addr}[$_], $resp->{error_status_code}[$_] }
        0 .. $resp->{no_unsuccess} - 1;
    print "multi $resp->{message_id} $resp->{no_unsuccess} @refused\n";
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

# query_sm of the first message, final by now.
my $q = $smpp->query_sm(message_id => $first, source_addr => '1069')
    or die "query_sm: ${*$smpp}{smpperror}\n";
printf "query %s 0x%08x %d %s\n", $q->{message_id}, $q->{status}, $q->{message_state}, $q->{final_date};

my $resp = $smpp->unbind() or die "unbind: ${*$smpp}{smpperror}\n";
printf "unbound 0x%08x\n", $resp->{status};
