/*
 * An SMSC written with osmocom's libsmpp34 (C), for gateway's
 * TestInteropLibsmpp34Upstream: qxtd's upstream binds to it. One process,
 * poll over its listener and up to 8 connections. It takes
 * bind_transceiver, bind_transmitter and bind_receiver of the system_id
 * and password given (each answered with its own *_resp, ESME_RBINDFAIL
 * for other credentials), and sends an enquire_link of its own on each
 * bind. It answers submit_sm on a transmitter or transceiver with its own
 * message ids (16 hex digits), ESME_RINVBNDSTS on a receiver, and right
 * behind each submit_sm_resp queues the message's receipt: a deliver_sm
 * of esm_class 0x04, an Appendix B text, receipted_message_id and
 * message_state DELIVERED. After the first submit_sm it queues a
 * handset's reply to the message's source (UCS-2). What it queues goes
 * to a bound receiver or transceiver only, never to a transmitter,
 * waiting until one is bound. It answers enquire_link and unbind, and
 * ends once every connection closed after an unbind. One line per event:
 *   listening <port>
 *   bound <system_id> <transmitter|receiver|transceiver> 0x<command_status>
 *   enquire_link_resp <kind> 0x<command_status>   (the answer to its own)
 *   submit <message_id> <data_coding> <esm_class> <registered_delivery> <short_message hex> <message_payload hex>
 *   deliver_sm_resp <kind> receipt <message_id> 0x<command_status>
 *   deliver_sm_resp <kind> reply 0x<command_status>
 *   unbound <kind>
 *   closed
 * A field that is absent prints as "-".
 *
 * Usage: smsc SYSTEM_ID PASSWORD
 */
#include <time.h>

#include "lib.h"

#define MAXCONN 8

static struct conn conns[MAXCONN];
static int listener;
static const char *user, *pass;
static int unbinds, submits;
static unsigned long long next_id = 0xA1B2C3D400000000ULL;

/* A deliver_sm waiting for a receiver, or sent and waiting for its answer. */
struct out {
    int used;
    struct conn *c;   /* NULL while waiting for a receiver */
    uint32_t seq;     /* once sent */
    char what[90];    /* "receipt <id>", "reply", "enquire_link" */
    deliver_sm_t d;
};
static struct out outs[64];

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case BIND_TRANSMITTER:
        return "transmitter";
    case BIND_RECEIVER:
        return "receiver";
    case BIND_TRANSCEIVER:
        return "transceiver";
    }
    return "unbound";
}

static struct out *new_out(const char *what)
{
    for (int i = 0; i < (int)(sizeof outs / sizeof outs[0]); i++) {
        if (!outs[i].used) {
            memset(&outs[i], 0, sizeof outs[i]);
            outs[i].used = 1;
            snprintf(outs[i].what, sizeof outs[i].what, "%s", what);
            return &outs[i];
        }
    }
    fail("too many deliver_sm waiting");
}

/* flush sends what waits for a receiver to a bound receiver or transceiver. */
static void flush(void)
{
    struct conn *rx = NULL;
    for (int i = 0; i < MAXCONN && !rx; i++) {
        if (conns[i].open && (conns[i].kind == BIND_RECEIVER || conns[i].kind == BIND_TRANSCEIVER)) {
            rx = &conns[i];
        }
    }
    if (!rx) {
        return;
    }
    for (int i = 0; i < (int)(sizeof outs / sizeof outs[0]); i++) {
        if (outs[i].used && !outs[i].c) {
            outs[i].c = rx;
            outs[i].seq = seq();
            outs[i].d.sequence_number = outs[i].seq;
            send_pdu(rx, DELIVER_SM, &outs[i].d);
            destroy_tlv(outs[i].d.tlv);
            outs[i].d.tlv = NULL;
        }
    }
}

/* stamp is now as Appendix B writes its dates, YYMMDDhhmm (UTC). */
static void stamp(char *out, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, size, "%y%m%d%H%M", &tm);
}

static void on_submit(struct conn *c, const uint8_t *pdu, int len)
{
    submit_sm_t s;
    memset(&s, 0, sizeof s);
    unpack(SUBMIT_SM, &s, pdu, len);
    submit_sm_resp_t r;
    memset(&r, 0, sizeof r);
    r.sequence_number = s.sequence_number;
    if (c->kind != BIND_TRANSMITTER && c->kind != BIND_TRANSCEIVER) {
        r.command_status = ESME_RINVBNDSTS;
        send_pdu(c, SUBMIT_SM_RESP, &r);
        destroy_tlv(s.tlv);
        return;
    }
    char id[20];
    snprintf(id, sizeof id, "%016llX", next_id++);
    snprintf((char *)r.message_id, sizeof r.message_id, "%s", id);
    send_pdu(c, SUBMIT_SM_RESP, &r);
    submits++;
    char sm[600], pl[2100];
    tlv_t *p = find_tlv(s.tlv, TLVID_message_payload);
    say("submit %s %u %u %u %s %s", id, s.data_coding, s.esm_class, s.registered_delivery,
        hex(s.short_message, s.sm_length, sm), p ? hex(p->value.octet, p->length, pl) : "-");

    if (s.registered_delivery & SMPP34_DELIVERY_RECEIPT_ON) {
        char what[40], date[16];
        snprintf(what, sizeof what, "receipt %s", id);
        struct out *o = new_out(what);
        deliver_sm_t *d = &o->d;
        d->source_addr_ton = s.dest_addr_ton;
        d->source_addr_npi = s.dest_addr_npi;
        memcpy(d->source_addr, s.destination_addr, sizeof d->source_addr);
        d->dest_addr_ton = s.source_addr_ton;
        d->dest_addr_npi = s.source_addr_npi;
        memcpy(d->destination_addr, s.source_addr, sizeof d->destination_addr);
        d->esm_class = SMPP34_DELIVERY_RECEIPT;
        stamp(date, sizeof date);
        d->sm_length = (uint8_t)snprintf((char *)d->short_message, sizeof d->short_message,
                                         "id:%s sub:001 dlvrd:001 submit date:%s done date:%s stat:DELIVRD err:000 text:",
                                         id, date, date);
        add_tlv(&d->tlv, TLVID_receipted_message_id, id, (uint16_t)(strlen(id) + 1));
        uint8_t st = 2; /* DELIVERED */
        add_tlv(&d->tlv, TLVID_message_state, &st, 1);
    }
    if (submits == 1) {
        /* 好的，收到 libsmpp34 in UCS-2 */
        static const uint8_t text[] = {0x59, 0x7d, 0x76, 0x84, 0xff, 0x0c, 0x65, 0x36, 0x52, 0x30, 0x00, 0x20,
                                       0x00, 0x6c, 0x00, 0x69, 0x00, 0x62, 0x00, 0x73, 0x00, 0x6d, 0x00, 0x70,
                                       0x00, 0x70, 0x00, 0x33, 0x00, 0x34};
        struct out *o = new_out("reply");
        deliver_sm_t *d = &o->d;
        d->source_addr_ton = TON_International;
        d->source_addr_npi = NPI_ISDN_E163_E164;
        memcpy(d->source_addr, s.destination_addr, sizeof d->source_addr);
        d->dest_addr_ton = s.source_addr_ton;
        d->dest_addr_npi = s.source_addr_npi;
        memcpy(d->destination_addr, s.source_addr, sizeof d->destination_addr);
        d->data_coding = 0x08;
        d->sm_length = sizeof text;
        memcpy(d->short_message, text, sizeof text);
    }
    destroy_tlv(s.tlv);
    flush();
}

static void on_bind(struct conn *c, uint32_t kind, const uint8_t *pdu, int len)
{
    bind_transmitter_t b; /* the three binds have the same fields */
    memset(&b, 0, sizeof b);
    unpack(kind, &b, pdu, len);
    bind_transmitter_resp_t r; /* and their answers too */
    memset(&r, 0, sizeof r);
    r.sequence_number = b.sequence_number;
    snprintf((char *)r.system_id, sizeof r.system_id, "%s", "libsmpp34");
    if (c->kind) {
        r.command_status = ESME_RALYBND;
    } else if (strcmp((char *)b.system_id, user) != 0 || strcmp((char *)b.password, pass) != 0) {
        r.command_status = ESME_RBINDFAIL;
    }
    send_pdu(c, kind | 0x80000000, &r);
    say("bound %s %s 0x%08x", (char *)b.system_id, kind_name(kind), r.command_status);
    if (r.command_status) {
        return;
    }
    c->kind = kind;
    c->name = kind_name(kind);
    /* our own enquire_link, which qxtd must answer */
    struct out *o = new_out("enquire_link");
    o->c = c;
    o->seq = seq();
    enquire_link_t e;
    memset(&e, 0, sizeof e);
    e.sequence_number = o->seq;
    send_pdu(c, ENQUIRE_LINK, &e);
    flush();
}

static void on_resp(struct conn *c, const uint8_t *pdu)
{
    uint32_t sq = be32(pdu + 12), st = be32(pdu + 8);
    for (int i = 0; i < (int)(sizeof outs / sizeof outs[0]); i++) {
        if (outs[i].used && outs[i].c == c && outs[i].seq == sq) {
            if (strcmp(outs[i].what, "enquire_link") == 0) {
                say("enquire_link_resp %s 0x%08x", c->name, st);
            } else {
                say("deliver_sm_resp %s %s 0x%08x", c->name, outs[i].what, st);
            }
            outs[i].used = 0;
            return;
        }
    }
    fail("%s: an answer 0x%08x to nothing sent, sequence %u", c->name, be32(pdu + 4), sq);
}

static void hang_up(struct conn *c)
{
    close(c->fd);
    c->open = 0;
    c->kind = 0;
    c->n = 0;
    /* what it was sent and did not answer is forgotten (its line never comes) */
    for (int i = 0; i < (int)(sizeof outs / sizeof outs[0]); i++) {
        if (outs[i].used && outs[i].c == c) {
            outs[i].used = 0;
        }
    }
}

static void dispatch(struct conn *c, const uint8_t *pdu, int len)
{
    uint32_t id = be32(pdu + 4), sq = be32(pdu + 12);
    if (id & 0x80000000) {
        on_resp(c, pdu);
        return;
    }
    switch (id) {
    case BIND_TRANSMITTER:
    case BIND_RECEIVER:
    case BIND_TRANSCEIVER:
        on_bind(c, id, pdu, len);
        break;
    case SUBMIT_SM:
        on_submit(c, pdu, len);
        break;
    case ENQUIRE_LINK:
        answer_enquire_link(c, sq);
        break;
    case UNBIND: {
        unbind_resp_t r;
        memset(&r, 0, sizeof r);
        r.sequence_number = sq;
        send_pdu(c, UNBIND_RESP, &r);
        say("unbound %s", c->name);
        unbinds++;
        hang_up(c);
        break;
    }
    default: {
        generic_nack_t r;
        memset(&r, 0, sizeof r);
        r.command_status = ESME_RINVCMDID;
        r.sequence_number = sq;
        send_pdu(c, GENERIC_NACK, &r);
    }
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fail("usage: smsc SYSTEM_ID PASSWORD");
    }
    user = argv[1];
    pass = argv[2];
    deadline(50);

    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(listener, 8) != 0 ||
        getsockname(listener, (struct sockaddr *)&a, &alen) != 0) {
        fail("listen: %s", strerror(errno));
    }
    say("listening %u", ntohs(a.sin_port));

    int ever = 0;
    uint8_t pdu[4096];
    for (;;) {
        struct pollfd fds[MAXCONN + 1];
        int open = 0;
        fds[0].fd = listener;
        fds[0].events = POLLIN;
        for (int i = 0; i < MAXCONN; i++) {
            fds[i + 1].fd = conns[i].open ? conns[i].fd : -1;
            fds[i + 1].events = POLLIN;
            open += conns[i].open;
        }
        if (ever && !open && unbinds > 0) {
            say("closed");
            return 0;
        }
        if (poll(fds, MAXCONN + 1, 1000) < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail("poll: %s", strerror(errno));
        }
        if (fds[0].revents) {
            int fd = accept(listener, NULL, NULL);
            if (fd < 0) {
                fail("accept: %s", strerror(errno));
            }
            int i = 0;
            while (i < MAXCONN && conns[i].open) {
                i++;
            }
            if (i == MAXCONN) {
                fail("more than %d connections", MAXCONN);
            }
            memset(&conns[i], 0, sizeof conns[i]);
            conns[i].fd = fd;
            conns[i].open = 1;
            conns[i].name = "unbound";
            ever = 1;
        }
        for (int i = 0; i < MAXCONN; i++) {
            struct conn *c = &conns[i];
            if (!c->open || !fds[i + 1].revents) {
                continue;
            }
            if (!fill(c)) {
                say("%s closed without unbind", c->name);
                hang_up(c);
                continue;
            }
            int len;
            while (c->open && (len = take(c, pdu)) > 0) {
                dispatch(c, pdu, len);
            }
        }
    }
}
