'use strict';
// An ESME written with node-smpp, for gateway's TestInteropNodeSMPPScheduled:
// scheduled messages as that library writes their times. It binds as a
// transceiver and submits, asking for receipts:
//   abs: schedule_delivery_time a Date an hour ahead (the library writes it
//        absolute, "YYMMDDhhmmsst00+", in UTC);
//   rel: schedule_delivery_time "000000010000" (the library pads it to the
//        relative "000000010000000R": in one hour);
//   now: no schedule, validity_period "000001000000000R" (one day);
// queries each, replaces the text of rel, cancels abs, queries abs and
// rel again, cancels abs a second time, and unbinds. One line per event:
//   submitted <name> <message_id>
//   query <name> 0x<command_status> <message_state>
//   replace 0x<command_status>
//   cancel 0x<command_status>
//   unbound 0x<command_status>
const smpp = require('smpp');

const [host, port, user, pass, src, dst] = process.argv.slice(2);
const {hex, say, fail, deadline, caller} = require('./lib');

deadline(25000);

const session = smpp.connect({url: `smpp://${host}:${port}`});
session.on('error', (e) => fail('session: ' + e.message));
session.on('deliver_sm', (pdu) => session.send(pdu.response()));
const call = caller(session);

async function main() {
	const b = await call('bind_transceiver', {system_id: user, password: pass});
	if (b.command_status !== 0) {
		fail('bind: ' + hex(b.command_status));
	}
	const base = {source_addr: src, destination_addr: dst, registered_delivery: 1};
	const sends = {
		abs: {short_message: 'scheduled, absolute', schedule_delivery_time: new Date(Date.now() + 3600e3)},
		rel: {short_message: 'scheduled, relative', schedule_delivery_time: '000000010000'},
		now: {short_message: 'with a validity', validity_period: '000001000000000R'},
	};
	const ids = {};
	for (const [name, params] of Object.entries(sends)) {
		const r = await call('submit_sm', Object.assign({}, base, params));
		if (r.command_status !== 0) {
			fail(`submit_sm ${name}: ${hex(r.command_status)}`);
		}
		ids[name] = r.message_id;
		say('submitted', name, r.message_id);
	}
	const query = async (name) => {
		const q = await call('query_sm', {message_id: ids[name], source_addr: src});
		say('query', name, hex(q.command_status), q.message_state);
	};
	for (const name of Object.keys(sends)) {
		await query(name);
	}
	const rp = await call('replace_sm', {message_id: ids.rel, source_addr: src, short_message: 'replaced text'});
	say('replace', hex(rp.command_status));
	const c = await call('cancel_sm', {message_id: ids.abs, source_addr: src, destination_addr: dst});
	say('cancel', hex(c.command_status));
	await query('abs');
	await query('rel');
	const c2 = await call('cancel_sm', {message_id: ids.abs, source_addr: src, destination_addr: dst});
	say('cancel', hex(c2.command_status));
	const u = await call('unbind', {});
	say('unbound', hex(u.command_status));
	session.close();
	process.exit(0);
}

main().catch((e) => fail(e.stack || String(e)));
