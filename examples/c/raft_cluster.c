/* Three consensus nodes in one process, from C.
 *
 *     cc raft_cluster.c $(pkg-config --cflags --libs consenso) -o raft_cluster
 *     ./raft_cluster --protocol raft      (or paxos, or zab)
 *
 * Each node's send callback puts the message on a queue; a thread of this
 * program's own delivers the queue with consenso_node_receive. The nodes
 * elect a leader, 1,000 commands are proposed through it, every node is
 * checked to have applied them in one order, the leader is stopped, and the
 * survivors elect another that carries on. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consenso.h"

#define NODES 3
#define COMMANDS 1000

static void die(const char *what, consenso_result r) {
    char detail[256];
    size_t needed = 0;
    if (consenso_last_error_message(detail, sizeof detail, &needed) != CONSENSO_RESULT_OK) detail[0] = '\0';
    fprintf(stderr, "raft_cluster: %s failed (code %u): %s\n", what, (unsigned)r, detail);
    exit(1);
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* ---------------------------------------------------------- the network */

struct message {
    struct message *next;
    uint64_t from, to;
    size_t len;
    uint8_t bytes[];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct message *head, *tail;
    consenso_node *nodes[NODES + 1]; /* by id; NULL: stopped */
    int stop;
} net = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, {NULL}, 0};

/* Queues a copy of the message; never blocks for long. */
static void enqueue(uint64_t from, uint64_t to, const uint8_t *bytes, size_t len) {
    struct message *m = malloc(sizeof *m + len);
    if (!m) return; /* a lost message: the protocol retries */
    m->next = NULL;
    m->from = from;
    m->to = to;
    m->len = len;
    memcpy(m->bytes, bytes, len);
    pthread_mutex_lock(&net.lock);
    if (net.tail) net.tail->next = m; else net.head = m;
    net.tail = m;
    pthread_cond_signal(&net.ready);
    pthread_mutex_unlock(&net.lock);
}

/* Delivers queued messages until stopped. */
static void *deliver(void *unused) {
    (void)unused;
    pthread_mutex_lock(&net.lock);
    while (!net.stop) {
        if (!net.head) {
            pthread_cond_wait(&net.ready, &net.lock);
            continue;
        }
        struct message *m = net.head;
        net.head = m->next;
        if (!net.head) net.tail = NULL;
        if (m->to <= NODES && net.nodes[m->to])
            (void)consenso_node_receive(net.nodes[m->to], m->from, m->bytes, m->len);
        free(m);
    }
    while (net.head) {
        struct message *m = net.head;
        net.head = m->next;
        free(m);
    }
    pthread_mutex_unlock(&net.lock);
    return NULL;
}

/* ---------------------------------------------------------- a node's host */

struct host {
    uint64_t id;
    pthread_mutex_t lock;
    uint32_t applied[COMMANDS + 16];
    size_t count;
};

static struct host hosts[NODES + 1];

static void on_send(void *user_data, uint64_t to, const uint8_t *bytes, size_t len) {
    struct host *h = user_data;
    enqueue(h->id, to, bytes, len);
}

/* The state machine: records each command (a 4-byte number) in order. */
static int32_t on_apply(void *user_data, uint64_t index, const uint8_t *command, size_t len,
                        consenso_response *response) {
    struct host *h = user_data;
    uint32_t value;
    if (len != sizeof value) return 1; /* not ours: fail the machine */
    memcpy(&value, command, sizeof value);
    pthread_mutex_lock(&h->lock);
    if (h->count < sizeof h->applied / sizeof h->applied[0]) h->applied[h->count++] = value;
    pthread_mutex_unlock(&h->lock);
    (void)index;
    return consenso_response_write(response, (const uint8_t *)"ok", 2) == CONSENSO_RESULT_OK ? 0 : 1;
}

static void on_state_change(void *user_data, consenso_role role, uint64_t term, uint64_t leader) {
    struct host *h = user_data;
    if (role == CONSENSO_ROLE_LEADER)
        printf("  node %llu leads (term %llu)\n", (unsigned long long)h->id, (unsigned long long)term);
    (void)leader;
}

static size_t applied_count(struct host *h) {
    pthread_mutex_lock(&h->lock);
    size_t n = h->count;
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* The node that says it leads, waiting up to 10 s; 0 if none. */
static uint64_t leader(void) {
    for (int tries = 0; tries < 1000; tries++) {
        for (uint64_t id = 1; id <= NODES; id++) {
            if (!net.nodes[id]) continue;
            consenso_node_status s;
            memset(&s, 0, sizeof s);
            s.struct_size = sizeof s;
            if (consenso_node_get_status(net.nodes[id], &s) == CONSENSO_RESULT_OK &&
                s.role == CONSENSO_ROLE_LEADER)
                return id;
        }
        sleep_ms(10);
    }
    return 0;
}

/* Proposes `value` through whichever node leads, following NOT_LEADER. */
static void propose(uint32_t value) {
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t id = leader();
        if (id == 0) break;
        consenso_result r =
            consenso_node_propose(net.nodes[id], (const uint8_t *)&value, sizeof value, 5000, NULL, NULL);
        if (r == CONSENSO_RESULT_OK) return;
        if (r != CONSENSO_RESULT_NOT_LEADER && r != CONSENSO_RESULT_BUSY) die("propose", r);
        sleep_ms(10);
    }
    fprintf(stderr, "raft_cluster: no leader took command %u\n", value);
    exit(1);
}

int main(int argc, char **argv) {
    uint32_t protocol = CONSENSO_PROTOCOL_RAFT;
    const char *name = "raft";
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--protocol") != 0) continue;
        name = argv[i + 1];
        if (strcmp(name, "raft") == 0) protocol = CONSENSO_PROTOCOL_RAFT;
        else if (strcmp(name, "paxos") == 0) protocol = CONSENSO_PROTOCOL_PAXOS;
        else if (strcmp(name, "zab") == 0) protocol = CONSENSO_PROTOCOL_ZAB;
        else {
            fprintf(stderr, "usage: %s [--protocol raft|paxos|zab]\n", argv[0]);
            return 2;
        }
    }
    printf("%s: three nodes in one process\n", name);
    pthread_t delivery;
    if (pthread_create(&delivery, NULL, deliver, NULL) != 0) return 1;

    uint64_t peers[NODES] = {1, 2, 3};
    for (uint64_t id = 1; id <= NODES; id++) {
        struct host *h = &hosts[id];
        h->id = id;
        pthread_mutex_init(&h->lock, NULL);
        consenso_node_config config;
        consenso_node_config_default(&config);
        config.protocol = protocol;
        config.id = id;
        config.peers = peers;
        config.peers_len = NODES;
        consenso_node_callbacks cb;
        memset(&cb, 0, sizeof cb);
        cb.struct_size = sizeof cb;
        cb.user_data = h;
        cb.send = on_send;
        cb.apply = on_apply;
        cb.on_state_change = on_state_change;
        consenso_node *node = NULL;
        consenso_result r = consenso_node_start(&config, &cb, &node);
        if (r != CONSENSO_RESULT_OK) die("consenso_node_start", r);
        pthread_mutex_lock(&net.lock);
        net.nodes[id] = node;
        pthread_mutex_unlock(&net.lock);
    }

    uint64_t first = leader();
    if (first == 0) die("electing a leader", CONSENSO_RESULT_TIMEOUT);
    printf("elected: node %llu\n", (unsigned long long)first);
    for (uint32_t v = 1; v <= COMMANDS; v++) propose(v);
    for (int t = 0; t < 1000; t++) {
        int done = 1;
        for (uint64_t id = 1; id <= NODES; id++) done &= applied_count(&hosts[id]) >= COMMANDS;
        if (done) break;
        sleep_ms(10);
    }
    for (uint64_t id = 1; id <= NODES; id++) {
        struct host *h = &hosts[id];
        if (applied_count(h) != COMMANDS ||
            memcmp(h->applied, hosts[1].applied, COMMANDS * sizeof(uint32_t)) != 0) {
            fprintf(stderr, "raft_cluster: node %llu applied a different log\n", (unsigned long long)id);
            return 1;
        }
    }
    printf("%d commands applied on every node, in one order\n", COMMANDS);

    /* Stop the leader; the survivors elect another and carry on. */
    pthread_mutex_lock(&net.lock);
    consenso_node *old = net.nodes[first];
    net.nodes[first] = NULL;
    pthread_mutex_unlock(&net.lock);
    consenso_result r = consenso_node_free(old);
    if (r != CONSENSO_RESULT_OK) die("consenso_node_free", r);
    printf("stopped node %llu\n", (unsigned long long)first);
    uint64_t next = leader();
    if (next == 0 || next == first) die("electing a new leader", CONSENSO_RESULT_TIMEOUT);
    printf("new leader: node %llu\n", (unsigned long long)next);
    for (uint32_t v = COMMANDS + 1; v <= COMMANDS + 10; v++) propose(v);
    printf("10 more commands committed by the survivors\n");

    /* The delivery thread stops first, so no node is freed mid-receive;
     * what the nodes send while they stop is freed below. */
    pthread_mutex_lock(&net.lock);
    net.stop = 1;
    pthread_cond_signal(&net.ready);
    pthread_mutex_unlock(&net.lock);
    pthread_join(delivery, NULL);
    for (uint64_t id = 1; id <= NODES; id++) {
        if (net.nodes[id]) (void)consenso_node_free(net.nodes[id]);
        pthread_mutex_destroy(&hosts[id].lock);
    }
    while (net.head) {
        struct message *m = net.head;
        net.head = m->next;
        free(m);
    }
    printf("ok\n");
    return 0;
}
