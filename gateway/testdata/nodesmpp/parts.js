'use strict';
// An ESME written with node-smpp (npm smpp 0.5.1, pinned in
// package-lock.json), for gateway's TestInteropNodeSMPPLongReplies: it
// binds as a receiver (bind_receiver) with the system_id and password
// given, answers every deliver_sm OK and, after the number of them given
// as its last argument, unbinds and ends. It joins nothing itself: for
// each deliver_sm it prints what the library decoded, for the test to
// join. One line per event:
//   bound
//   deliver <source_addr> <destination_addr> <data_coding> <esm_class> <udh> <sar_msg_ref_num> <sar_total_segments> <sar_segment_seqnum> <payload> <text>
//     (<udh>: the UDH's IEs as the library split short_message, in hex
//     without the UDHL octet, '-' for none; the SAR TLVs as numbers as
//     the library read them, '-' for one absent; <payload>: the length
//     of a message_payload TLV's text, '-' for none; <text>:
//     short_message's text as the library decoded it for the
//     data_coding, JSON-encoded, last as it may hold spaces)
//   unbound 0x<command_status>
const smpp = require('smpp');

const [host, port, user, pass, count] = process.argv.slice(2);
const want = Number(count);
const {hex, say, fail, deadline, caller} = require('./lib');

deadline(25000);

const session = smpp.connect({url: `smpp://${host}:${port}`, auto_enquire_link_period: 500});
session.on('error', (e) => fail('session: ' + e.message));
const call = caller(session);

let got = 0;
let done = null; // resolves once want deliver_sm came
const tlv = (v) => v === undefined || v === null ? '-' : String(v);

session.on('deliver_sm', (pdu) => {
	session.send(pdu.response());
	const sm = pdu.short_message;
	const udh = sm && sm.udh && sm.udh.length ? Buffer.concat(sm.udh).toString('hex') : '-';
	const text = sm && sm.message !== undefined ? String(sm.message) : '';
	const payload = pdu.message_payload ? String(String(pdu.message_payload.message).length) : '-';
	say('deliver', pdu.source_addr, pdu.destination_addr, pdu.data_coding, pdu.esm_class, udh,
		tlv(pdu.sar_msg_ref_num), tlv(pdu.sar_total_segments), tlv(pdu.sar_segment_seqnum), payload, JSON.stringify(text));
	got++;
	if (done && got >= want) {
		done();
	}
});

async function main() {
	const b = await call('bind_receiver', {system_id: user, password: pass});
	if (b.command_status !== 0) {
		fail('bind: ' + hex(b.command_status));
	}
	say('bound');
	await new Promise((resolve) => {
		done = resolve;
		if (got >= want) {
			resolve();
		}
	});
	const u = await call('unbind', {});
	say('unbound', hex(u.command_status));
	session.close();
	process.exit(0);
}

main().catch((e) => fail(e.stack || String(e)));
