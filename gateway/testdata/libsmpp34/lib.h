/*
 * What esme.c, smsc.c and parts.c share: PDUs packed and unpacked by
 * osmocom's libsmpp34 (Debian's libsmpp34-dev, C: a fourth SMPP
 * implementation, independent of qxtd's, go-smpp's, Net::SMPP's and
 * node-smpp's), framed on TCP sockets read with poll, event lines on
 * stdout, failures on stderr (exit 1), and a deadline for the whole
 * program.
 *
 * libsmpp34 only packs and unpacks: the sockets, the framing and the
 * sequence numbers are ours. It checks what it reads: an unknown
 * command_status, TON or NPI, a sequence_number of 0 or a PDU whose
 * command_length does not match its fields is an error (reported here
 * with smpp34_strerror).
 */
#ifndef LIBSMPP34_TEST_LIB_H
#define LIBSMPP34_TEST_LIB_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <smpp34.h>
#include <smpp34_structs.h>
#include <smpp34_params.h>

#define LIB static __attribute__((unused))

/* say prints one event line, at once (the Go test waits on it). */
LIB void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
LIB void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* fail ends the program with msg on stderr, exit status 1. */
LIB void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
LIB void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "timeout\n";
    ssize_t n = write(2, msg, sizeof msg - 1);
    (void)n;
    _exit(1);
}

/* deadline fails the program after sec seconds, whatever it waits on. */
LIB void deadline(unsigned sec)
{
    signal(SIGALRM, on_alarm);
    alarm(sec);
}

/* A TCP connection and what was read from it but not yet taken. */
struct conn {
    int fd;
    const char *name; /* what the lines call it: transmitter, receiver, ... */
    uint8_t buf[1 << 16];
    size_t n;
    int open;
    uint32_t kind; /* bound as: BIND_TRANSMITTER, BIND_RECEIVER, BIND_TRANSCEIVER; 0 */
};

/* connect_to opens c: a TCP connection to host (IPv4) and port, name its name in lines. */
LIB void connect_to(struct conn *c, const char *host, const char *port, const char *name)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fail("address %s", host);
    }
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        fail("connect %s:%s: %s", host, port, strerror(errno));
    }
    c->name = name;
    c->open = 1;
}

static uint32_t next_seq = 1;

/* seq is a new sequence_number. */
LIB uint32_t seq(void)
{
    return next_seq++;
}

/* send_pdu packs p (a libsmpp34 struct, its header first) and sends it. */
LIB void send_pdu(struct conn *c, uint32_t type, void *p)
{
    uint8_t out[4096];
    int len = 0;
    ((uint32_t *)p)[1] = type; /* command_id, after command_length */
    if (smpp34_pack(type, out, sizeof out, &len, p) != 0) {
        fail("smpp34_pack 0x%08x: %s", type, smpp34_strerror);
    }
    for (int off = 0; off < len;) {
        ssize_t w = write(c->fd, out + off, len - off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail("%s: write: %s", c->name, strerror(errno));
        }
        off += w;
    }
}

/* answer_enquire_link answers the peer's enquire_link of sequence sq. */
LIB void answer_enquire_link(struct conn *c, uint32_t sq)
{
    enquire_link_resp_t r;
    memset(&r, 0, sizeof r);
    r.sequence_number = sq;
    send_pdu(c, ENQUIRE_LINK_RESP, &r);
}

/* unpack reads the PDU pdu (len octets) into p, a zeroed struct of its type. */
LIB void unpack(uint32_t type, void *p, const uint8_t *pdu, int len)
{
    if (smpp34_unpack(type, p, pdu, len) != 0) {
        fail("smpp34_unpack 0x%08x: %s", type, smpp34_strerror);
    }
}

LIB uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/*
 * take moves the next whole PDU out of c's buffer into pdu (at least 4096
 * octets) and returns its length, or 0 when none is whole yet.
 */
LIB int take(struct conn *c, uint8_t *pdu)
{
    if (c->n < 16) {
        return 0;
    }
    uint32_t len = be32(c->buf);
    if (len < 16 || len > 4096) {
        fail("%s: command_length %u", c->name, len);
    }
    if (c->n < len) {
        return 0;
    }
    memcpy(pdu, c->buf, len);
    memmove(c->buf, c->buf + len, c->n - len);
    c->n -= len;
    return (int)len;
}

/* fill reads what c has; 0 when the peer closed it. */
LIB int fill(struct conn *c)
{
    for (;;) {
        ssize_t r = read(c->fd, c->buf + c->n, sizeof c->buf - c->n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            fail("%s: read: %s", c->name, strerror(errno));
        }
        c->n += (size_t)r;
        return r > 0;
    }
}

/* hex writes n octets of b as hex into out (2n+1 octets); "-" for none. */
LIB const char *hex(const uint8_t *b, int n, char *out)
{
    if (n <= 0) {
        return "-";
    }
    for (int i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", b[i]);
    }
    return out;
}

/* field is the NUL-ended text of n octets at b, for a line: '-' if empty. */
LIB const char *field(const uint8_t *b, int n, char *out, int size)
{
    int k = 0;
    for (int i = 0; i < n && b[i] && k < size - 1; i++) {
        out[k++] = (char)b[i];
    }
    out[k] = 0;
    return k ? out : "-";
}

/* add_tlv puts a TLV of tag with len octets of val on list. */
LIB void add_tlv(tlv_t **list, uint16_t tag, const void *val, uint16_t len)
{
    tlv_t t;
    memset(&t, 0, sizeof t);
    t.tag = tag;
    t.length = len;
    if (len == 1) {
        t.value.val08 = *(const uint8_t *)val;
    } else {
        memcpy(t.value.octet, val, len);
    }
    if (build_tlv(list, &t) != 0) {
        fail("build_tlv");
    }
}

/* find_tlv is the TLV of tag on list, or NULL. */
LIB tlv_t *find_tlv(tlv_t *list, uint16_t tag)
{
    tlv_t *t;
    smpp34_tlv_for_each(t, list) {
        if (t->tag == tag) {
            return t;
        }
    }
    return NULL;
}

#endif
