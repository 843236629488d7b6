'use strict';
// An ESME written with node-smpp (npm smpp 0.5.1, pinned in
// package-lock.json: an independent SMPP implementation in JavaScript), for
// gateway's TestInteropNodeSMPP. Unlike Net::SMPP it keeps many requests in
// flight at once, picks the data_coding from the text itself (IA5 0x01 for
// what the GSM alphabet holds, Latin-1 0x03, else UCS-2 0x08) and sends
// enquire_link on its own. It binds as a transceiver and, all at once,
// submits:
//   - 20 short IA5 texts, a Latin-1 one and a UCS-2 one;
//   - a long text it splits itself in two parts (a UDH with 8-bit IEI 0x00);
//   - a long text in message_payload, a data_sm, and a submit_multi to the
//     destination and to a number the account may not reach;
// every one asking for a receipt. It answers every deliver_sm, counts the
// receipts, waits for a handset's reply when asked to (argument 8), queries
// the first message and unbinds. One line per event:
//   bound
//   submitted <message_id>
//   data <message_id>
//   multi <message_id> <no_unsuccess> [<destination>:0x<error_status_code> ...]
//   receipt <receipted_message_id> <message_state> <short_message>
//   reply <source_addr> <destination_addr> <data_coding> <text>
//   binary <source_addr> <destination_addr> <data_coding> <UDH's IEs in hex> <octets in hex> <source_port>:<destination_port>
//     (a reply of 8-bit data, data_coding 4, from short_message or, when
//     that is empty, message_payload, as the library splits them; the
//     port TLVs as the library read them (its dest_port), '-' for one
//     absent)
//   query <message_id> 0x<command_status> <message_state> <final_date as ISO>
//   unbound 0x<command_status>
const smpp = require('smpp');

const [host, port, user, pass, src, dst, other, replies, secure] = process.argv.slice(2);
const wantReplies = Number(replies || 0);
const {hex, say, fail, deadline, caller} = require('./lib');

deadline(25000);

// "tls" as the last argument: over TLS (ssmpp://), trusting the test's
// self-signed certificate.
const scheme = secure === 'tls' ? 'ssmpp' : 'smpp';
const session = smpp.connect({url: `${scheme}://${host}:${port}`, auto_enquire_link_period: 500, rejectUnauthorized: false});
session.on('error', (e) => fail('session: ' + e.message));
const call = caller(session);

const submitted = new Set();
let receipts = 0;
let gotReplies = 0;
let waiting = null; // resolves when every receipt and reply came
const check = () => {
	if (waiting && receipts >= submitted.size && gotReplies >= wantReplies) {
		waiting();
	}
};

session.on('deliver_sm', (pdu) => {
	session.send(pdu.response());
	const text = pdu.short_message && pdu.short_message.message !== undefined ?
		String(pdu.short_message.message) : '';
	if (pdu.esm_class & 0x04) {
		say('receipt', pdu.receipted_message_id, pdu.message_state, text);
		receipts++;
	} else if (pdu.data_coding === 4) {
		const sm = pdu.short_message && pdu.short_message.message && pdu.short_message.message.length ?
			pdu.short_message : pdu.message_payload;
		const udh = sm && sm.udh ? Buffer.concat(sm.udh).toString('hex') : '-';
		const port = (p) => p === undefined ? '-' : String(p);
		say('binary', pdu.source_addr, pdu.destination_addr, pdu.data_coding, udh, sm ? Buffer.from(sm.message).toString('hex') : '-',
			port(pdu.source_port) + ':' + port(pdu.dest_port));
		gotReplies++;
	} else {
		const body = text || (pdu.message_payload ? String(pdu.message_payload.message) : '');
		say('reply', pdu.source_addr, pdu.destination_addr, pdu.data_coding, JSON.stringify(body));
		gotReplies++;
	}
	check();
});

async function main() {
	const b = await call('bind_transceiver', {system_id: user, password: pass});
	if (b.command_status !== 0) {
		fail('bind: ' + hex(b.command_status));
	}
	say('bound');
	const sm = (params) => call('submit_sm', Object.assign({
		source_addr: src, destination_addr: dst, registered_delivery: 1,
	}, params));
	const sends = [];
	for (let i = 0; i < 20; i++) {
		sends.push(sm({short_message: `hello from node-smpp ${i}`}));
	}
	sends.push(sm({short_message: 'café crème à Noël'}));
	sends.push(sm({short_message: '中文短信，来自 node-smpp'}));
	const long = 'A long text that node-smpp sends in two parts, split by the client itself with a UDH. ';
	for (let seq = 1; seq <= 2; seq++) {
		sends.push(sm({
			short_message: {udh: Buffer.from([0x05, 0x00, 0x03, 0x5a, 0x02, seq]), message: long + `Part ${seq}.`},
		}));
	}
	sends.push(sm({message_payload: 'A text in message_payload, longer than one SMS could hold: '.repeat(4)}));
	sends.push(call('data_sm', {
		source_addr: src, destination_addr: dst, registered_delivery: 1, message_payload: 'sent as data_sm',
	}));
	const resps = await Promise.all(sends);
	let first = null;
	for (const r of resps) {
		if (r.command_status !== 0) {
			fail(`${r.command}: ${hex(r.command_status)}`);
		}
		say(r.command === 'data_sm_resp' ? 'data' : 'submitted', r.message_id);
		submitted.add(r.message_id);
		first = first || r.message_id;
	}
	const m = await call('submit_multi', {
		source_addr: src, registered_delivery: 1, short_message: 'to several',
		dest_address: [{destination_addr: dst}, {destination_addr: other}],
	});
	if (m.command_status !== 0) {
		fail('submit_multi: ' + hex(m.command_status));
	}
	say('multi', m.message_id, m.unsuccess_sme.length,
		...m.unsuccess_sme.map((u) => `${u.destination_addr}:${hex(u.error_status_code)}`));
	submitted.add(m.message_id);
	await new Promise((resolve) => {
		waiting = resolve;
		check();
	});
	const q = await call('query_sm', {message_id: first, source_addr: src});
	const fd = q.final_date instanceof Date ? q.final_date.toISOString() : String(q.final_date);
	say('query', q.message_id, hex(q.command_status), q.message_state, fd);
	const u = await call('unbind', {});
	say('unbound', hex(u.command_status));
	session.close();
	process.exit(0);
}

main().catch((e) => fail(e.stack || String(e)));
