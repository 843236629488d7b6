'use strict';
// An SMSC written with node-smpp (npm smpp 0.5.1, pinned in
// package-lock.json) that behaves in one of the odd but legal ways real
// SMSCs do, for gateway's TestInteropNodeSMSCOdd. Arguments: system_id,
// password, and its modes, separated by commas. It takes binds of those
// credentials, answers enquire_link and sends a receipt for each message
// that asks for one (Appendix B text and the TLVs, DELIVRD), except where
// a mode says otherwise:
//   enquire   it sends its own enquire_link every 200 ms
//   throttle  the 1st submit_sm answered ESME_RTHROTTLED, the 2nd
//             ESME_RMSGQFUL, both without a body (§4.4.2)
//   throttlemany  the first 20 submit_sm answered ESME_RTHROTTLED
//   invdst    every submit_sm answered ESME_RINVDSTADR, without a body
//   partreject  the 2nd submit_sm answered ESME_RINVDSTADR
//   nack      the 1st submit_sm answered generic_nack ESME_RSYSERR
//   datasm    receipts as data_sm (esm_class 0x04, TLVs only)
//   idcase    message ids in lower-case hex with leading zeros; receipts
//             in the text only, the id upper case without them
//   states    the receipt's state is the word the text holds (UNDELIV,
//             EXPIRED or REJECTD: message_state 5, 3 or 8)
//   reorder   each odd submit_sm's response sent after the next one's
//             (its receipt, sent at once, then comes first)
//   late      the 1st submit_sm_resp sent 700 ms late, its receipt after it
//   textcopy  receipts in the text only, its text: the original's first
//             20 characters, in the data_coding node-smpp picks for it
//   sar       after the first message, a reply in two parts with SAR TLVs
//   datamo    after the first message, a reply as data_sm (UCS-2 payload)
//   partfail  the 2nd submit_sm's receipt says UNDELIV (message_state 5)
//   dup       every receipt sent again 500 ms after its first copy was
//             answered
//   early     the receipt sent first, the submit_sm_resp once the
//             receipt is answered
//   payload   after the first message, a handset's reply in
//             message_payload (UCS-2) with an empty short_message
//   bindfail  the first bind answered ESME_RBINDFAIL
// It ends when the ESME unbinds. One line per event:
//   listening <port>
//   bound <system_id> <command_status>
//   submit <message_id> <state>
//   resp <message_id>                 (its submit_sm_resp sent)
//   refused 0x<command_status>
//   receipt_resp 0x<command_status>   (the answer to each receipt)
//   link_resp 0x<command_status>      (the answer to its enquire_link)
//   unbound
//   closed
const smpp = require('smpp');

const [user, pass, modes] = process.argv.slice(2);
const is = (m) => modes.split(',').includes(m);
const {say, hex, stamp, deadline} = require('./lib');

deadline(50000);
const text = (m) => (typeof m === 'string' ? m : m && typeof m.message === 'string' ? m.message : '');
const states = {DELIVRD: 2, EXPIRED: 3, UNDELIV: 5, REJECTD: 8};

let binds = 0;
let submits = 0;
let nextID = 0xabc00;
let held = null; // reorder: the response held back
const server = smpp.createServer((session) => {
	let esmeUnbound = false;
	let bound = false;
	let linker = null;
	session.on('error', (e) => process.stderr.write('session: ' + e.message + '\n'));
	const bind = (pdu) => {
		binds++;
		let st = pdu.system_id === user && pdu.password === pass ? 0 : smpp.ESME_RBINDFAIL;
		if (is('bindfail') && binds === 1) {
			st = smpp.ESME_RBINDFAIL;
		}
		session.send(pdu.response({command_status: st, system_id: 'nodesmsc'}));
		bound = st === 0;
		say('bound', pdu.system_id, hex(st));
		if (bound && is('enquire')) {
			linker = setInterval(() => {
				session.enquire_link({}, (resp) => say('link_resp', hex(resp.command_status)));
			}, 200);
		}
	};
	session.on('bind_transceiver', bind);
	session.on('bind_transmitter', bind);
	session.on('bind_receiver', bind);
	session.on('enquire_link', (pdu) => session.send(pdu.response()));
	const sendReceipt = (pdu, id, state, done) => {
		const now = stamp(new Date());
		const stat = Object.keys(states).find((k) => states[k] === state);
		const receipt = {
			source_addr: pdu.destination_addr, destination_addr: pdu.source_addr, esm_class: 0x04,
		};
		if (is('datasm')) {
			Object.assign(receipt, {receipted_message_id: id, message_state: state});
			session.data_sm(receipt, (resp) => {
				say('receipt_resp', hex(resp.command_status));
				if (done) done();
			});
			return;
		}
		const textID = is('idcase') ? id.replace(/^0+/, '').toUpperCase() : id;
		receipt.short_message = `id:${textID} sub:001 dlvrd:${state === 2 ? '001' : '000'} submit date:${now} done date:${now} stat:${stat} err:${state === 2 ? '000' : '001'} text:`;
		if (is('textcopy')) {
			// The original's first 20 characters, and node-smpp picks
			// the data_coding from the whole text: UCS-2 for Chinese.
			receipt.short_message += text(pdu.short_message).slice(0, 20);
			receipt.data_coding = null;
		}
		if (!is('idcase') && !is('textcopy')) {
			Object.assign(receipt, {receipted_message_id: id, message_state: state});
		}
		session.deliver_sm(Object.assign({}, receipt), (resp) => {
			say('receipt_resp', hex(resp.command_status));
			if (done) done();
			if (is('dup')) {
				// Again, once the first copy has long reached the ESME.
				setTimeout(() => session.deliver_sm(Object.assign({}, receipt), (resp) => {
					say('receipt_resp', hex(resp.command_status));
				}), 500);
			}
		});
	};
	session.on('submit_sm', (pdu) => {
		if (!bound) {
			session.send(pdu.response({command_status: smpp.ESME_RINVBNDSTS}));
			return;
		}
		submits++;
		let refuse = 0;
		if (is('throttle') && submits <= 2) {
			refuse = submits === 1 ? smpp.ESME_RTHROTTLED : smpp.ESME_RMSGQFUL;
		} else if (is('throttlemany') && submits <= 20) {
			refuse = smpp.ESME_RTHROTTLED;
		} else if (is('invdst') || is('partreject') && submits === 2) {
			refuse = smpp.ESME_RINVDSTADR;
		}
		if (refuse) {
			// A response with an error status has no body (§4.4.2):
			// node-smpp writes the header alone.
			session.send(pdu.response({command_status: refuse}));
			say('refused', hex(refuse));
			return;
		}
		if (is('nack') && submits === 1) {
			session.send(new smpp.PDU('generic_nack', {sequence_number: pdu.sequence_number, command_status: smpp.ESME_RSYSERR}));
			say('refused', hex(smpp.ESME_RSYSERR));
			return;
		}
		const id = is('idcase') ? (nextID++).toString(16).padStart(10, '0') : 'n' + (nextID++);
		let state = 2;
		if (is('states')) {
			const m = /UNDELIV|EXPIRED|REJECTD/.exec(text(pdu.short_message) + text(pdu.message_payload));
			state = m ? states[m[0]] : 2;
		}
		if (is('partfail') && submits === 2) {
			state = 5;
		}
		say('submit', id, state);
		let resp = () => {
			session.send(pdu.response({message_id: id}));
			say('resp', id);
		};
		if (is('reorder')) {
			// Each odd submit_sm's response waits for the next one's
			// (or 300 ms, for the last).
			const own = resp;
			if (held) {
				const prev = held;
				held = null;
				resp = () => {
					own();
					prev();
				};
			} else {
				let sent = false;
				const once = () => {
					if (!sent) {
						sent = true;
						own();
					}
				};
				held = once;
				setTimeout(() => {
					if (held === once) held = null;
					once();
				}, 300);
				resp = () => {};
			}
		}
		if (is('late') && submits === 1) {
			// Past qxtd's resp_timeout (300 ms in the test), its receipt
			// behind it.
			const own = resp;
			resp = () => {};
			setTimeout(() => {
				own();
				if (pdu.registered_delivery & 0x01) sendReceipt(pdu, id, state);
			}, 700);
			return;
		}
		const wants = pdu.registered_delivery & 0x01;
		if (is('early') && wants) {
			sendReceipt(pdu, id, state, resp);
		} else {
			resp();
			if (wants) {
				sendReceipt(pdu, id, state);
			}
		}
		if (is('sar') && submits === 1) {
			// A long reply in two parts joined by the SAR TLVs (§5.3.2.22-24),
			// no UDH.
			['第一部分：长回复，', '第二部分，完。'].forEach((part, i) => {
				session.deliver_sm({
					source_addr: pdu.destination_addr, destination_addr: pdu.source_addr,
					data_coding: 0x08, short_message: Buffer.from(part, 'utf16le').swap16(),
					sar_msg_ref_num: 0x1234, sar_total_segments: 2, sar_segment_seqnum: i + 1,
				});
			});
		}
		if (is('datamo') && submits === 1) {
			session.data_sm({
				source_addr: pdu.destination_addr, destination_addr: pdu.source_addr,
				data_coding: 0x08, message_payload: Buffer.from('好的，data_sm 里的回复', 'utf16le').swap16(),
			});
		}
		if (is('payload') && submits === 1) {
			session.deliver_sm({
				source_addr: pdu.destination_addr, destination_addr: pdu.source_addr,
				data_coding: 0x08, short_message: Buffer.alloc(0),
				message_payload: Buffer.from('好的，payload 里的回复', 'utf16le').swap16(),
			});
		}
	});
	session.on('unbind', (pdu) => {
		session.send(pdu.response());
		say('unbound');
		esmeUnbound = true;
		session.close();
	});
	session.on('close', () => {
		if (linker) clearInterval(linker);
		say('closed');
		if (esmeUnbound) {
			server.close();
			process.exit(0);
		}
	});
});

server.listen(0, '127.0.0.1', () => say('listening', server.address().port));
