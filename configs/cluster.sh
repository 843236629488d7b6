#!/usr/bin/env bash
# make cluster: one etcd member and three qxtd nodes on loopback, from
# configs/qxtd.yaml with the cluster keys set per node in the environment
# (README "Cluster"). Node 1 embeds the SMSC simulator; all three bind to
# it and share upstreams[].binds between them. Ctrl-C stops everything;
# the data stays in DIR for the next run.
#
# usage: configs/cluster.sh BIN DIR
set -eu
bin=$1
dir=$2
mkdir -p "$dir"
etcd=$(command -v etcd || true)
if [ -z "$etcd" ]; then
	echo "make cluster needs etcd: apt-get install etcd-server (or put an etcd binary on PATH)" >&2
	exit 1
fi
pids=""
stop() {
	trap - INT TERM EXIT
	# qxtd nodes first (they unbind and give back their slots), etcd last.
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$etcd" --name qxtd-etcd --data-dir "$dir/etcd" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster qxtd-etcd=http://127.0.0.1:2380 \
	--max-txn-ops 1024 --log-level warn >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
i=0
until (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 $etcd_pid 2>/dev/null; then
		echo "etcd did not start; see $dir/etcd.log" >&2
		exit 1
	fi
	sleep 0.1
done
echo "etcd on 127.0.0.1:2379 (log: $dir/etcd.log)"

secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The nodes reach each other from one address (127.0.0.1): each keeps up to
# 64 connections to each other node, and the peer listener counts them per
# source address, so the cap is 64 x the nodes (with the default 64, two
# nodes' pools shut each other out, 503, until idle connections close).
for n in 1 2 3; do
	sim=false
	[ $n = 1 ] && sim=true
	env QXTD_CLUSTER_ETCD_ENDPOINTS=127.0.0.1:2379 \
		QXTD_CLUSTER_NODE_ID=$n \
		QXTD_CLUSTER_PEER_LISTEN=127.0.0.1:710$n \
		QXTD_CLUSTER_SECRET="$secret" \
		QXTD_SMPP_LISTEN=127.0.0.1:$((2765 + 10 * n)) \
		QXTD_HTTP_LISTEN=127.0.0.1:808$((n - 1)) \
		QXTD_SIMULATOR_ENABLED=$sim \
		QXTD_STORE_PATH="$dir/node$n.db" \
		QXTD_LOG_FORMAT=text \
		QXTD_HTTP_MAX_CONNS_PER_ADDR=192 \
		"$bin" serve --config configs/qxtd.yaml > >(sed -u "s/^/node$n  /") 2>&1 &
	pids="$! $pids"
	echo "node $n: SMPP 127.0.0.1:$((2765 + 10 * n)), console http://127.0.0.1:808$((n - 1))/, peer 127.0.0.1:710$n"
done
pids="$pids $etcd_pid"
wait
