'use strict';
// An SMSC written with node-smpp (npm smpp 0.5.1, pinned in
// package-lock.json), for gateway's TestInteropNodeSMPPUpstream: qxtd's
// upstream binds to it. It takes binds of the system_id and password given,
// answers enquire_link, and answers each submit_sm with a UUID message_id
// (36 characters, as many SMSCs give), then sends its receipt at once:
// every other one with the TLVs only (receipted_message_id, message_state,
// an empty short_message), the rest in Appendix B text only. After the
// first message it sends a handset's reply to the message's source, in
// UCS-2; after the second, a long reply in two parts with a UDH. Given a
// third argument K, after the K-th submit_sm it unbinds the ESME itself,
// as an SMSC does for its maintenance, and takes the next bind. An ESME
// bound as a transmitter and a receiver gets its receipts and replies on
// a receiver (a transceiver on itself), and a receiver's submit_sm is
// refused ESME_RINVBNDSTS. It ends when every bind the ESME holds has
// unbound. One line per event:
//   listening <port>
//   bound <system_id> <command>
//   submit <message_id> <data_coding> <esm_class> <registered_delivery>
//   unbind_resp 0x<command_status>   (the answer to its own unbind)
//   unbound                          (the ESME unbound)
//   closed
const crypto = require('crypto');
const smpp = require('smpp');

const [user, pass, unbindAfter] = process.argv.slice(2);
const {say, stamp, deadline} = require('./lib');

deadline(50000);

let submits = 0;
// The sessions bound now, with the command that bound each.
const sessions = new Map();
// out is where the receipts and replies of a submit_sm on session go: the
// session itself if a transceiver, else a receiver bound now.
const out = (session) => {
	if (sessions.get(session) === 'bind_transceiver') {
		return session;
	}
	for (const [s, command] of sessions) {
		if (command === 'bind_receiver') {
			return s;
		}
	}
	say('no_receiver');
	return null;
};
// open counts the connections; esmeUnbinds the unbinds the ESME sent.
let open = 0;
let esmeUnbinds = 0;
const server = smpp.createServer((session) => {
	open++;
	session.on('error', (e) => process.stderr.write('session: ' + e.message + '\n'));
	let bound = false;
	const bind = (pdu) => {
		const ok = pdu.system_id === user && pdu.password === pass;
		session.send(pdu.response({command_status: ok ? 0 : smpp.ESME_RBINDFAIL, system_id: 'nodesmsc'}));
		bound = ok;
		if (ok) {
			sessions.set(session, pdu.command);
		}
		say('bound', pdu.system_id, pdu.command);
	};
	session.on('bind_transceiver', bind);
	session.on('bind_transmitter', bind);
	session.on('bind_receiver', bind);
	session.on('enquire_link', (pdu) => session.send(pdu.response()));
	session.on('submit_sm', (pdu) => {
		if (!bound || sessions.get(session) === 'bind_receiver') {
			session.send(pdu.response({command_status: smpp.ESME_RINVBNDSTS}));
			return;
		}
		const rx = out(session);
		const id = crypto.randomUUID();
		session.send(pdu.response({message_id: id}));
		submits++;
		say('submit', id, pdu.data_coding, pdu.esm_class, pdu.registered_delivery);
		const now = stamp(new Date());
		if (pdu.registered_delivery & 0x01) {
			const receipt = {
				source_addr: pdu.destination_addr, destination_addr: pdu.source_addr, esm_class: 0x04,
			};
			if (submits % 2) {
				Object.assign(receipt, {receipted_message_id: id, message_state: 2, short_message: ''});
			} else {
				receipt.short_message = `id:${id} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:DELIVRD err:000 text:`;
			}
			rx?.deliver_sm(receipt);
		}
		if (submits === 1) {
			rx?.deliver_sm({
				source_addr: pdu.destination_addr, destination_addr: pdu.source_addr,
				short_message: '好的，已收到 node-smpp',
			});
		} else if (submits === 2) {
			const long = 'A reply_long from me@home, sent by the handset in two parts: ';
			for (let seq = 1; seq <= 2; seq++) {
				rx?.deliver_sm({
					source_addr: pdu.destination_addr, destination_addr: pdu.source_addr,
					short_message: {udh: Buffer.from([0x05, 0x00, 0x03, 0x2c, 0x02, seq]), message: `${long}part ${seq}. `},
				});
			}
		}
		if (String(submits) === unbindAfter) {
			// Refuse what comes after the unbind (ESME_RINVBNDSTS), and
			// send nothing more on this session.
			bound = false;
			sessions.delete(session);
			session.unbind({}, (resp) => {
				say('unbind_resp', '0x' + resp.command_status.toString(16).padStart(8, '0'));
				session.close();
			});
		}
	});
	session.on('unbind', (pdu) => {
		session.send(pdu.response());
		say('unbound');
		sessions.delete(session);
		esmeUnbinds++;
		session.close();
	});
	session.on('close', () => {
		sessions.delete(session);
		open--;
		say('closed');
		if (esmeUnbinds > 0 && open === 0) {
			server.close();
			process.exit(0);
		}
	});
});

server.listen(0, '127.0.0.1', () => say('listening', server.address().port));
