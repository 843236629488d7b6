/*
 * An ESME written with osmocom's libsmpp34 (C), for gateway's
 * TestInteropLibsmpp34. It binds to qxtd with one account either as a
 * transmitter and a receiver apart (mode "pair": two TCP connections) or
 * as a transceiver (mode "trx"), sends enquire_link on each bind, and on
 * the transmitter (or transceiver) submits one message per argument
 * KIND:TEXT, each asking for a receipt:
 *   gsm:TEXT      data_coding 0x00, the text's octets (GSM 7-bit, one
 *                 septet per octet: plain ASCII letters only);
 *   ucs2:TEXT     data_coding 0x08, the UTF-8 text as UCS-2;
 *   long:TEXT     data_coding 0x00, split here in parts of 153 octets with
 *                 a UDH (esm_class 0x40, IEI 0x00, its own reference);
 *   payload:TEXT  data_coding 0x00, the text in message_payload;
 *   refused:DEST:TEXT  data_coding 0x00, to DEST, which qxtd refuses:
 *                 the answer's status and command_length are printed.
 * It answers every deliver_sm (and enquire_link) on whichever bind it
 * comes, waits until a receipt came for every message id and REPLIES
 * handsets' replies came, queries the first message, and unbinds each
 * bind. One line per event:
 *   bound <kind> 0x<command_status>         (then, all bound: "bound")
 *   enquire_link_resp <bind> 0x<command_status>
 *   submitted <kind> <message_id>
 *   refused 0x<command_status> <command_length>
 *   receipt <bind> <receipted_message_id> <message_state> <id: of the text> <stat: of the text>
 *   reply <bind> <source_addr> <destination_addr> <data_coding> <esm_class> <short_message hex> <message_payload hex>
 *   query <message_id> 0x<command_status> <message_state> <final_date>
 *   unbound <bind> 0x<command_status>
 * A field that is absent prints as "-".
 *
 * Usage: esme HOST PORT SYSTEM_ID PASSWORD SOURCE DEST pair|trx REPLIES KIND:TEXT...
 */
#include "lib.h"

static struct conn conns[2];
static int nconns;

static int receipts, replies;

/* A response waited for, by the connection it is expected on. */
static struct {
    struct conn *c;
    uint32_t seq;
    uint8_t pdu[4096];
    int len;
} want;

static struct conn *dial(const char *host, const char *port, const char *name)
{
    struct conn *c = &conns[nconns++];
    connect_to(c, host, port, name);
    return c;
}

/* appendixB copies the value of key (as "id:" or "stat:") in text to out. */
static const char *appendixB(const char *text, const char *key, char *out, int size)
{
    const char *p = strstr(text, key);
    int k = 0;
    if (p) {
        for (p += strlen(key); *p && *p != ' ' && k < size - 1; p++) {
            out[k++] = *p;
        }
    }
    out[k] = 0;
    return k ? out : "-";
}

static void on_deliver_sm(struct conn *c, const uint8_t *pdu, int len)
{
    deliver_sm_t d;
    memset(&d, 0, sizeof d);
    unpack(DELIVER_SM, &d, pdu, len);
    if (d.esm_class & SMPP34_DELIVERY_RECEIPT) {
        char text[256], rid[70], id[70], stat[16], st[8] = "-";
        tlv_t *t = find_tlv(d.tlv, TLVID_receipted_message_id);
        tlv_t *s = find_tlv(d.tlv, TLVID_message_state);
        field(d.short_message, d.sm_length, text, sizeof text);
        if (s) {
            snprintf(st, sizeof st, "%u", s->value.val08);
        }
        say("receipt %s %s %s %s %s", c->name, t ? field(t->value.octet, t->length, rid, sizeof rid) : "-", st,
            appendixB(text, "id:", id, sizeof id), appendixB(text, "stat:", stat, sizeof stat));
        receipts++;
    } else {
        char sm[600], pl[2100], src[30], dst[30];
        tlv_t *p = find_tlv(d.tlv, TLVID_message_payload);
        say("reply %s %s %s %u %u %s %s", c->name, field(d.source_addr, sizeof d.source_addr, src, sizeof src),
            field(d.destination_addr, sizeof d.destination_addr, dst, sizeof dst), d.data_coding, d.esm_class,
            hex(d.short_message, d.sm_length, sm), p ? hex(p->value.octet, p->length, pl) : "-");
        replies++;
    }
    destroy_tlv(d.tlv);
    deliver_sm_resp_t r;
    memset(&r, 0, sizeof r);
    r.sequence_number = d.sequence_number;
    send_pdu(c, DELIVER_SM_RESP, &r);
}

/* dispatch handles one PDU read on c. */
static void dispatch(struct conn *c, const uint8_t *pdu, int len)
{
    uint32_t id = be32(pdu + 4), sq = be32(pdu + 12);
    if (id & 0x80000000) {
        if (want.c != c || want.seq != sq || want.len) {
            fail("%s: an unexpected response 0x%08x, sequence %u", c->name, id, sq);
        }
        memcpy(want.pdu, pdu, len);
        want.len = len;
        return;
    }
    switch (id) {
    case DELIVER_SM:
        on_deliver_sm(c, pdu, len);
        break;
    case ENQUIRE_LINK:
        answer_enquire_link(c, sq);
        say("peer_enquire_link %s", c->name);
        break;
    default:
        fail("%s: qxtd sent command 0x%08x", c->name, id);
    }
}

/*
 * pump reads and handles what comes on every bind, until done() holds
 * (the deadline ends it otherwise).
 */
static void pump(int (*done)(void))
{
    uint8_t pdu[4096];
    for (;;) {
        for (int i = 0; i < nconns; i++) {
            int len;
            while ((len = take(&conns[i], pdu)) > 0) {
                dispatch(&conns[i], pdu, len);
            }
        }
        if (done()) {
            return;
        }
        struct pollfd fds[2];
        for (int i = 0; i < nconns; i++) {
            fds[i].fd = conns[i].open ? conns[i].fd : -1;
            fds[i].events = POLLIN;
            fds[i].revents = 0;
        }
        if (poll(fds, nconns, 1000) < 0 && errno != EINTR) {
            fail("poll: %s", strerror(errno));
        }
        for (int i = 0; i < nconns; i++) {
            if (fds[i].revents && !fill(&conns[i])) {
                fail("%s: qxtd closed the connection", conns[i].name);
            }
        }
    }
}

static int got_resp(void)
{
    return want.len > 0;
}

/* request sends p on c and returns its response's PDU (its length in *len). */
static const uint8_t *request(struct conn *c, uint32_t type, void *p, int *len)
{
    uint32_t sq = seq();
    ((uint32_t *)p)[3] = sq;
    want.c = c;
    want.seq = sq;
    want.len = 0;
    send_pdu(c, type, p);
    pump(got_resp);
    *len = want.len;
    want.c = NULL;
    if (be32(want.pdu + 4) != (type | 0x80000000) && be32(want.pdu + 4) != GENERIC_NACK) {
        fail("%s: 0x%08x answered with 0x%08x", c->name, type, be32(want.pdu + 4));
    }
    return want.pdu;
}

static void bind_as(struct conn *c, uint32_t kind, const char *user, const char *pass)
{
    bind_transmitter_t b; /* the three binds have the same fields */
    int len;
    memset(&b, 0, sizeof b);
    snprintf((char *)b.system_id, sizeof b.system_id, "%s", user);
    snprintf((char *)b.password, sizeof b.password, "%s", pass);
    b.interface_version = SMPP_VERSION;
    const uint8_t *r = request(c, kind, &b, &len);
    uint32_t st = be32(r + 8);
    if (st == 0) {
        /* unpack to see the library read the answer: system_id, TLVs */
        bind_transmitter_resp_t br;
        memset(&br, 0, sizeof br);
        unpack(kind | 0x80000000, &br, r, len);
        destroy_tlv(br.tlv);
    }
    say("bound %s 0x%08x", c->name, st);
    if (st != 0) {
        fail("%s: bind refused", c->name);
    }
    c->kind = kind;
}

static void enquire(struct conn *c)
{
    enquire_link_t e;
    int len;
    memset(&e, 0, sizeof e);
    const uint8_t *r = request(c, ENQUIRE_LINK, &e, &len);
    say("enquire_link_resp %s 0x%08x", c->name, be32(r + 8));
}

/* utf8ucs2 writes the UTF-8 text s as UCS-2 (big-endian) to out; its length. */
static int utf8ucs2(const char *s, uint8_t *out, int size)
{
    const uint8_t *p = (const uint8_t *)s;
    int n = 0;
    while (*p) {
        uint32_t c;
        if (*p < 0x80) {
            c = *p++;
        } else if ((*p & 0xe0) == 0xc0 && p[1]) {
            c = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
            p += 2;
        } else if ((*p & 0xf0) == 0xe0 && p[1] && p[2]) {
            c = (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
            p += 3;
        } else {
            fail("text %s: not UTF-8 of the BMP", s);
        }
        if (n + 2 > size) {
            fail("text %s: too long", s);
        }
        out[n++] = (uint8_t)(c >> 8);
        out[n++] = (uint8_t)c;
    }
    return n;
}

static char ids[16][65];
static int nids;

/* submit sends one submit_sm; its message_id is kept and printed. */
static void submit(struct conn *c, const char *kind, const char *src, const char *dst, uint8_t dc, uint8_t esm,
                   const uint8_t *sm, int smlen, const uint8_t *payload, int plen)
{
    submit_sm_t s;
    int len;
    memset(&s, 0, sizeof s);
    snprintf((char *)s.source_addr, sizeof s.source_addr, "%s", src);
    snprintf((char *)s.destination_addr, sizeof s.destination_addr, "%s", dst);
    s.source_addr_ton = TON_National;
    s.source_addr_npi = NPI_ISDN_E163_E164;
    s.dest_addr_ton = TON_National;
    s.dest_addr_npi = NPI_ISDN_E163_E164;
    s.esm_class = esm;
    s.registered_delivery = SMPP34_DELIVERY_RECEIPT_ON;
    s.data_coding = dc;
    s.sm_length = (uint8_t)smlen;
    memcpy(s.short_message, sm, smlen);
    if (plen > 0) {
        add_tlv(&s.tlv, TLVID_message_payload, payload, (uint16_t)plen);
    }
    const uint8_t *r = request(c, SUBMIT_SM, &s, &len);
    destroy_tlv(s.tlv);
    if (strcmp(kind, "refused") == 0) {
        /*
         * SMPP 3.4 §4.4.2 returns no body with an error, which is all
         * libsmpp34 reads then (it refuses a longer one, and a status not
         * in its list): unpacked when it can be, else only printed.
         */
        if (be32(r + 8) != 0 && len == 16) {
            submit_sm_resp_t sr;
            char name[SMALL_BUFF];
            memset(&sr, 0, sizeof sr);
            if (str_command_status(be32(r + 8), name)[0]) { /* a status libsmpp34 knows */
                unpack(SUBMIT_SM_RESP, &sr, r, len);
            }
        }
        say("refused 0x%08x %d", be32(r + 8), len);
        return;
    }
    if (be32(r + 8) != 0) {
        fail("submit_sm %s: 0x%08x", kind, be32(r + 8));
    }
    submit_sm_resp_t sr;
    memset(&sr, 0, sizeof sr);
    unpack(SUBMIT_SM_RESP, &sr, r, len);
    if (nids == 16) {
        fail("too many messages");
    }
    snprintf(ids[nids], sizeof ids[nids], "%s", (char *)sr.message_id);
    say("submitted %s %s", kind, ids[nids]);
    nids++;
}

static int want_replies;

static int all_came(void)
{
    return receipts >= nids && replies >= want_replies;
}

int main(int argc, char **argv)
{
    if (argc < 9) {
        fail("usage: esme HOST PORT SYSTEM_ID PASSWORD SOURCE DEST pair|trx REPLIES KIND:TEXT...");
    }
    const char *host = argv[1], *port = argv[2], *user = argv[3], *pass = argv[4], *src = argv[5], *dst = argv[6];
    int pair = strcmp(argv[7], "pair") == 0;
    want_replies = atoi(argv[8]);
    deadline(25);

    struct conn *tx;
    if (pair) {
        tx = dial(host, port, "transmitter");
        bind_as(tx, BIND_TRANSMITTER, user, pass);
        bind_as(dial(host, port, "receiver"), BIND_RECEIVER, user, pass);
    } else {
        tx = dial(host, port, "transceiver");
        bind_as(tx, BIND_TRANSCEIVER, user, pass);
    }
    say("bound");
    for (int i = 0; i < nconns; i++) {
        enquire(&conns[i]);
    }

    uint8_t ref = 0x4c;
    for (int i = 9; i < argc; i++) {
        char *text = strchr(argv[i], ':');
        if (!text) {
            fail("argument %s: want KIND:TEXT", argv[i]);
        }
        *text++ = 0;
        const char *kind = argv[i];
        int n = (int)strlen(text);
        if (strcmp(kind, "gsm") == 0) {
            if (n > 160) {
                fail("gsm text too long");
            }
            submit(tx, kind, src, dst, 0x00, 0, (const uint8_t *)text, n, NULL, 0);
        } else if (strcmp(kind, "ucs2") == 0) {
            uint8_t u[140];
            int un = utf8ucs2(text, u, sizeof u);
            submit(tx, kind, src, dst, 0x08, 0, u, un, NULL, 0);
        } else if (strcmp(kind, "long") == 0) {
            int parts = (n + 152) / 153;
            if (parts < 2 || parts > 9) {
                fail("long text of %d characters", n);
            }
            for (int p = 0; p < parts; p++) {
                uint8_t sm[160] = {0x05, 0x00, 0x03, ref, (uint8_t)parts, (uint8_t)(p + 1)};
                int k = n - p * 153 < 153 ? n - p * 153 : 153;
                memcpy(sm + 6, text + p * 153, k);
                submit(tx, kind, src, dst, 0x00, SMPP34_UDHI_IND, sm, 6 + k, NULL, 0);
            }
            ref++;
        } else if (strcmp(kind, "refused") == 0) {
            /* TEXT is DEST:TEXT, to a destination qxtd refuses */
            char *t = strchr(text, ':');
            if (!t) {
                fail("refused:%s: want refused:DEST:TEXT", text);
            }
            *t++ = 0;
            submit(tx, kind, src, text, 0x00, 0, (const uint8_t *)t, (int)strlen(t), NULL, 0);
        } else if (strcmp(kind, "payload") == 0) {
            if (n > 1024) {
                fail("payload too long");
            }
            submit(tx, kind, src, dst, 0x00, 0, NULL, 0, (const uint8_t *)text, n);
        } else {
            fail("kind %s", kind);
        }
    }

    pump(all_came);

    query_sm_t q;
    int len;
    memset(&q, 0, sizeof q);
    snprintf((char *)q.message_id, sizeof q.message_id, "%s", ids[0]);
    snprintf((char *)q.source_addr, sizeof q.source_addr, "%s", src);
    q.source_addr_ton = TON_National;
    q.source_addr_npi = NPI_ISDN_E163_E164;
    const uint8_t *r = request(tx, QUERY_SM, &q, &len);
    query_sm_resp_t qr;
    memset(&qr, 0, sizeof qr);
    if (be32(r + 8) == 0) {
        unpack(QUERY_SM_RESP, &qr, r, len);
    }
    char fd[20];
    say("query %s 0x%08x %u %s", qr.message_id[0] ? (char *)qr.message_id : "-", be32(r + 8), qr.message_state,
        field(qr.final_date, sizeof qr.final_date, fd, sizeof fd));

    for (int i = 0; i < nconns; i++) {
        unbind_t u;
        memset(&u, 0, sizeof u);
        r = request(&conns[i], UNBIND, &u, &len);
        say("unbound %s 0x%08x", conns[i].name, be32(r + 8));
        close(conns[i].fd);
        conns[i].open = 0;
    }
    return 0;
}
