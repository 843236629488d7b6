#!/usr/bin/perl
# An SMSC written with Perl's Net::SMPP (Debian's libnet-smpp-perl), for
# gateway's TestInteropNetSMPPUpstream: qxtd's upstream binds to it. It
# listens on 127.0.0.1 (port 0: any), prints "listening <port>", takes one
# connection, accepts a bind_transceiver with system_id/password given,
# answers each submit_sm with a hex message_id and at once sends a
# delivery receipt for it (Appendix B text only, no TLVs, as many SMSCs
# do), answers enquire_link, and ends at unbind or when the peer closes.
# It prints one line per submit_sm:
#   submit <message_id> <data_coding> <esm_class> <registered_delivery> <short_message hex>
use strict;
use warnings;
use Net::SMPP;
use POSIX qw(strftime);

my ($user, $pass) = @ARGV;
$| = 1;
$SIG{ALRM} = sub { die "timeout\n" };
alarm 60;

my $l = Net::SMPP->new_listen('127.0.0.1', port => 0, async => 1, smpp_version => 0x34)
    or die "listen: $!\n";
print "listening ", $l->sockport, "\n";
my $c = $l->accept or die "accept: $!\n";
# The accepted connection is a Net::SMPP too, without the listener's
# settings: give it them (async: a receipt does not wait for its response).
${*$c}{$_} = ${*$l}{$_} for keys %{ Net::SMPP::Default() };
${*$c}{async} = 1;
$c->set_version(0x34);
close $l;

my $n = 0;
while (1) {
    my $pdu = $c->read_pdu() or last;   # the peer closed
    my $cmd = $pdu->{cmd};
    if ($cmd == Net::SMPP::CMD_bind_transceiver) {
        my $ok = ($pdu->{system_id} // '') eq $user && ($pdu->{password} // '') eq $pass;
        $c->bind_transceiver_resp(seq => $pdu->{seq}, system_id => 'perlsmsc', status => $ok ? 0 : 0x0E);
    } elsif ($cmd == Net::SMPP::CMD_submit_sm) {
        my $id = sprintf '%x', 0xA000 + $n++;
        $c->submit_sm_resp(seq => $pdu->{seq}, message_id => $id);
        printf "submit %s %d %d %d %s\n", $id, $pdu->{data_coding}, $pdu->{esm_class},
            $pdu->{registered_delivery}, unpack('H*', $pdu->{short_message});
        my $now = strftime('%y%m%d%H%M', localtime);
        $c->deliver_sm(
            source_addr      => $pdu->{destination_addr},
            destination_addr => $pdu->{source_addr},
            esm_class        => 0x04,
            short_message    => "id:$id sub:001 dlvrd:001 submit date:$now done date:$now stat:DELIVRD err:000 text:",
        );
    } elsif ($cmd == Net::SMPP::CMD_enquire_link) {
        $c->enquire_link_resp(seq => $pdu->{seq});
    } elsif ($cmd == Net::SMPP::CMD_unbind) {
        $c->unbind_resp(seq => $pdu->{seq});
        last;
    }
    # Responses (deliver_sm_resp, enquire_link_resp) need nothing.
}
print "closed\n";
