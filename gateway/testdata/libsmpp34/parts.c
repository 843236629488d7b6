/*
 * An ESME written with osmocom's libsmpp34 (C), for gateway's
 * TestInteropLibsmpp34LongReplies: it binds to qxtd as a receiver
 * (bind_receiver) with the system_id and password given, answers every
 * deliver_sm ESME_ROK and every enquire_link, and once COUNT deliver_sm
 * came (0: no count), on SIGTERM or when its stdin closes (so give it
 * one that stays open: /dev/null ends it at once), unbinds and ends. It
 * joins and decodes nothing: for each deliver_sm it prints what
 * libsmpp34 unpacked, octets in hex, for the test to decode and join.
 * One line per event:
 *   bound
 *   deliver <source_addr> <destination_addr> <data_coding> <esm_class> <udh> <sar_msg_ref_num> <sar_total_segments> <sar_segment_seqnum> <payload> <short_message>
 *     (<udh>: with esm_class UDHI (0x40), the IEs of the UDH that heads
 *     the user data, its UDHL octet left out, in hex; '-' without UDHI:
 *     libsmpp34 leaves short_message as octets, so it is cut here by its
 *     UDHL;
 *     the SAR TLVs' values as numbers, '-' for one absent; <payload>:
 *     message_payload's length in octets, '-' for none; <short_message>:
 *     all its octets, the UDH's included, in hex, '-' for none)
 *   peer_enquire_link
 *   unbound 0x<command_status>
 * Any other PDU, a response not waited for, a refused bind or unbind, a
 * PDU libsmpp34 cannot unpack or the connection's end ends it with a
 * message on stderr, exit status 1.
 *
 * Usage: parts HOST PORT SYSTEM_ID PASSWORD COUNT
 */
#define _GNU_SOURCE /* ppoll */

#include <fcntl.h>

#include "lib.h"

static struct conn conn;
static int want_count, got;
static volatile sig_atomic_t terminated;

static void on_term(int sig)
{
    (void)sig;
    terminated = 1;
}

/*
 * on_deliver_sm prints what libsmpp34 read of one deliver_sm and answers
 * it OK.
 *
 * libsmpp34 (1.14) reads a TLV it knows by its own size for the tag, not
 * by the TLV's length field: sar_msg_ref_num as 2 octets, the other two
 * SAR TLVs as 1, whatever length precedes them. A length that differs
 * would leave it reading the next TLV from the wrong octet (its PDU
 * length check catches most of that, not all), so the lengths are
 * checked here: the values printed are then the ones qxtd sent.
 */
static void on_deliver_sm(const uint8_t *pdu, int len)
{
    deliver_sm_t d;
    memset(&d, 0, sizeof d);
    unpack(DELIVER_SM, &d, pdu, len);

    static const struct {
        uint16_t tag;
        uint16_t size;
    } sar[3] = {{TLVID_sar_msg_ref_num, 2}, {TLVID_sar_total_segments, 1}, {TLVID_sar_segment_seqnum, 1}};
    char sarv[3][8];
    for (int i = 0; i < 3; i++) {
        tlv_t *t = find_tlv(d.tlv, sar[i].tag);
        snprintf(sarv[i], sizeof sarv[i], "-");
        if (!t) {
            continue;
        }
        if (t->length != sar[i].size) {
            fail("deliver_sm: TLV 0x%04x of length %u, libsmpp34 reads %u octets", t->tag, t->length, sar[i].size);
        }
        snprintf(sarv[i], sizeof sarv[i], "%u", (unsigned)(sar[i].size == 2 ? t->value.val16 : t->value.val08));
    }

    tlv_t *p = find_tlv(d.tlv, TLVID_message_payload);
    char plen[8] = "-";
    if (p) {
        snprintf(plen, sizeof plen, "%u", p->length);
    }

    /* The UDH heads the user data: short_message, or message_payload when that is empty. */
    char udh[2 * 256 + 1] = "-";
    if (d.esm_class & SMPP34_UDHI_IND) {
        const uint8_t *ud = d.short_message;
        int udlen = d.sm_length;
        if (udlen == 0 && p) {
            ud = p->value.octet;
            udlen = p->length;
        }
        if (udlen < 1 || 1 + ud[0] > udlen) {
            fail("deliver_sm: esm_class 0x%02x (UDHI) and %d octets of user data, UDHL %d", d.esm_class, udlen,
                 udlen ? ud[0] : -1);
        }
        hex(ud + 1, ud[0], udh);
    }

    char src[30], dst[30], sm[2 * 256 + 1];
    say("deliver %s %s %u %u %s %s %s %s %s %s", field(d.source_addr, sizeof d.source_addr, src, sizeof src),
        field(d.destination_addr, sizeof d.destination_addr, dst, sizeof dst), d.data_coding, d.esm_class, udh,
        sarv[0], sarv[1], sarv[2], plen, hex(d.short_message, d.sm_length, sm));
    destroy_tlv(d.tlv);

    deliver_sm_resp_t r;
    memset(&r, 0, sizeof r);
    r.sequence_number = d.sequence_number;
    send_pdu(&conn, DELIVER_SM_RESP, &r);
    got++;
}

/* The request sent whose response is waited for: 0 for none. */
static uint32_t want_id, want_seq;

static void request(uint32_t type, void *p)
{
    want_seq = seq();
    want_id = type | 0x80000000;
    ((uint32_t *)p)[3] = want_seq;
    send_pdu(&conn, type, p);
}

/*
 * dispatch handles one PDU; a response waited for is returned (its
 * command_status), else -1.
 */
static long dispatch(const uint8_t *pdu, int len)
{
    uint32_t id = be32(pdu + 4), st = be32(pdu + 8), sq = be32(pdu + 12);
    switch (id) {
    case DELIVER_SM:
        on_deliver_sm(pdu, len);
        return -1;
    case ENQUIRE_LINK:
        answer_enquire_link(&conn, sq);
        say("peer_enquire_link");
        return -1;
    case UNBIND: {
        unbind_resp_t r;
        memset(&r, 0, sizeof r);
        r.sequence_number = sq;
        send_pdu(&conn, UNBIND_RESP, &r);
        fail("qxtd unbound the receiver");
    }
    }
    if (id != want_id || sq != want_seq) {
        fail("qxtd sent command 0x%08x, status 0x%08x, sequence %u (waiting for 0x%08x, sequence %u)", id, st, sq,
             want_id, want_seq);
    }
    if (st == 0 && id == BIND_RECEIVER_RESP) {
        /* unpack to see the library read the answer: system_id, TLVs */
        bind_receiver_resp_t br;
        memset(&br, 0, sizeof br);
        unpack(id, &br, pdu, len);
        destroy_tlv(br.tlv);
    }
    want_id = 0;
    return st;
}

/*
 * await handles what comes until the response to the request sent comes
 * (its command_status returned) or, with stopping, until stop() holds
 * (-1 returned).
 */
static long await(int stopping)
{
    uint8_t pdu[4096];
    sigset_t unblocked;
    sigprocmask(SIG_SETMASK, NULL, &unblocked);
    sigdelset(&unblocked, SIGTERM);
    for (;;) {
        int len;
        while ((len = take(&conn, pdu)) > 0) {
            long st = dispatch(pdu, len);
            if (st >= 0) {
                return st;
            }
        }
        if (stopping && (terminated || (want_count > 0 && got >= want_count))) {
            return -1;
        }
        /* stdin is watched until it closes; SIGTERM, blocked elsewhere, interrupts ppoll alone */
        struct pollfd fds[2] = {{.fd = conn.fd, .events = POLLIN}, {.fd = stopping ? 0 : -1, .events = POLLIN}};
        if (ppoll(fds, 2, NULL, &unblocked) < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail("poll: %s", strerror(errno));
        }
        if (fds[0].revents && !fill(&conn)) {
            fail("qxtd closed the connection");
        }
        if (fds[1].revents) {
            char b[256];
            ssize_t r = read(0, b, sizeof b);
            if (r <= 0 && !(r < 0 && errno == EINTR)) {
                return -1; /* closed (or unreadable) */
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fail("usage: parts HOST PORT SYSTEM_ID PASSWORD COUNT");
    }
    want_count = atoi(argv[5]);
    deadline(25);

    /* SIGTERM is taken only inside ppoll, so that none is missed between a check and a wait. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);

    /* Started with stdin closed: it is, but the socket must not take fd 0 and be read as stdin. */
    if (fcntl(0, F_GETFD) < 0 && open("/dev/null", O_RDONLY) != 0) {
        fail("stdin: %s", strerror(errno));
    }
    connect_to(&conn, argv[1], argv[2], "receiver");
    bind_receiver_t b;
    memset(&b, 0, sizeof b);
    snprintf((char *)b.system_id, sizeof b.system_id, "%s", argv[3]);
    snprintf((char *)b.password, sizeof b.password, "%s", argv[4]);
    b.interface_version = SMPP_VERSION;
    request(BIND_RECEIVER, &b);
    long st = await(0);
    if (st != 0) {
        fail("bind_receiver refused: 0x%08lx", st);
    }
    conn.kind = BIND_RECEIVER;
    say("bound");

    await(1);

    unbind_t u;
    memset(&u, 0, sizeof u);
    request(UNBIND, &u);
    st = await(0);
    say("unbound 0x%08lx", st);
    close(conn.fd);
    if (st != 0) {
        fail("unbind refused: 0x%08lx", st);
    }
    return 0;
}
