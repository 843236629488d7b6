'use strict';
// What the scripts share: printing their event lines, failing with a
// message (exit 1), a deadline for the whole script, and a promise per
// request.

// hex is a command_status as the lines print it, 0x and 8 digits.
exports.hex = (n) => '0x' + (n >>> 0).toString(16).padStart(8, '0');

// say prints one event line.
exports.say = (...a) => process.stdout.write(a.join(' ') + '\n');

// fail ends the script with msg on stderr, exit status 1.
const fail = (msg) => {
	process.stderr.write(msg + '\n');
	process.exit(1);
};
exports.fail = fail;

// deadline fails the script after ms.
exports.deadline = (ms) => setTimeout(() => fail('timeout'), ms);

// caller returns call(cmd, params), a promise of cmd's response on session.
exports.caller = (session) => (cmd, params) => new Promise((resolve) => session[cmd](params, resolve));

// stamp is d as an Appendix B receipt writes its dates, YYMMDDhhmm (UTC).
exports.stamp = (d) => {
	const p = (n) => String(n).padStart(2, '0');
	return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) + p(d.getUTCMinutes());
};
