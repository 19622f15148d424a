/* Consensus nodes from C, under AddressSanitizer and UndefinedBehaviorSanitizer
 * (make c-test): three nodes per protocol in one process whose send
 * callbacks deliver through a queue and a thread of this test's own; they
 * elect, commit in one order, answer reads, refuse bad input with the
 * documented codes, refuse shutdown and free from their own callbacks, stop
 * on a failed apply, and free user_data exactly once. Each check names
 * itself when it fails. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consenso.h"

static atomic_int checks;

#define CHECK(cond)                                                          \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define OK(call) CHECK((call) == CONSENSO_RESULT_OK)
#define NODES 3

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* ------------------------------------------------ the test's own network */

struct message {
    struct message *next;
    uint64_t from, to;
    size_t len;
    uint8_t bytes[];
};

struct network {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct message *head, *tail;
    consenso_node *nodes[NODES + 1]; /* by id; NULL: down */
    int stop;
    pthread_t thread;
};

static void net_push(struct network *net, uint64_t from, uint64_t to, const uint8_t *bytes, size_t len) {
    struct message *m = malloc(sizeof *m + len);
    CHECK(m != NULL);
    m->next = NULL;
    m->from = from;
    m->to = to;
    m->len = len;
    memcpy(m->bytes, bytes, len);
    pthread_mutex_lock(&net->lock);
    if (net->tail) net->tail->next = m; else net->head = m;
    net->tail = m;
    pthread_cond_signal(&net->ready);
    pthread_mutex_unlock(&net->lock);
}

static void *net_run(void *arg) {
    struct network *net = arg;
    pthread_mutex_lock(&net->lock);
    for (;;) {
        while (!net->head && !net->stop) pthread_cond_wait(&net->ready, &net->lock);
        if (net->stop) break;
        struct message *m = net->head;
        net->head = m->next;
        if (!net->head) net->tail = NULL;
        consenso_node *to = m->to <= NODES ? net->nodes[m->to] : NULL;
        /* Delivered under the lock, so a node is never freed mid-receive. */
        if (to) (void)consenso_node_receive(to, m->from, m->bytes, m->len);
        free(m);
    }
    while (net->head) {
        struct message *m = net->head;
        net->head = m->next;
        free(m);
    }
    pthread_mutex_unlock(&net->lock);
    return NULL;
}

/* ------------------------------------------------ one node's host state */

struct host {
    struct network *net;
    uint64_t id;
    pthread_mutex_t lock;
    uint32_t applied[4096];
    size_t count;
    atomic_int frees;
    atomic_int fail_at;       /* apply returns 1 at this index (0: never) */
    atomic_int call_back_in;  /* apply tries shutdown/free/propose on itself */
    atomic_int refusals;      /* ...and counts the WOULD_BLOCK answers */
    consenso_node *self;
};

static void host_send(void *user_data, uint64_t to, const uint8_t *bytes, size_t len) {
    struct host *h = user_data;
    net_push(h->net, h->id, to, bytes, len);
}

static void host_send_nowhere(void *user_data, uint64_t to, const uint8_t *bytes, size_t len) {
    (void)user_data, (void)to, (void)bytes, (void)len;
}

static int32_t host_apply(void *user_data, uint64_t index, const uint8_t *command, size_t len,
                          consenso_response *response) {
    struct host *h = user_data;
    if (atomic_load(&h->fail_at) != 0 && (uint64_t)atomic_load(&h->fail_at) <= index) return 1;
    if (atomic_load(&h->call_back_in) && h->self) {
        if (consenso_node_shutdown(h->self) == CONSENSO_RESULT_WOULD_BLOCK) atomic_fetch_add(&h->refusals, 1);
        if (consenso_node_free(h->self) == CONSENSO_RESULT_WOULD_BLOCK) atomic_fetch_add(&h->refusals, 1);
        if (consenso_node_propose(h->self, command, len, 1000, NULL, NULL) == CONSENSO_RESULT_WOULD_BLOCK)
            atomic_fetch_add(&h->refusals, 1);
    }
    uint32_t value = 0;
    if (len == sizeof value) memcpy(&value, command, sizeof value);
    pthread_mutex_lock(&h->lock);
    if (h->count < sizeof h->applied / sizeof h->applied[0]) h->applied[h->count++] = value;
    pthread_mutex_unlock(&h->lock);
    char reply[32];
    int n = snprintf(reply, sizeof reply, "ok:%llu", (unsigned long long)index);
    return consenso_response_write(response, (const uint8_t *)reply, (size_t)n) == CONSENSO_RESULT_OK ? 0 : 1;
}

static void host_free(void *user_data) {
    struct host *h = user_data;
    atomic_fetch_add(&h->frees, 1);
}

struct cluster {
    struct network net;
    struct host hosts[NODES + 1];
    uint64_t peers[NODES];
};

static consenso_node_config config_for(uint32_t protocol, uint64_t id, const uint64_t *peers) {
    consenso_node_config c;
    OK(consenso_node_config_default(&c));
    c.protocol = protocol;
    c.id = id;
    c.peers = peers;
    c.peers_len = NODES;
    c.election_timeout_min_ms = 60;
    c.election_timeout_max_ms = 120;
    c.heartbeat_ms = 15;
    return c;
}

static consenso_node_callbacks callbacks_for(struct host *h) {
    consenso_node_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.user_data = h;
    cb.user_data_free = host_free;
    cb.send = host_send;
    cb.apply = host_apply;
    return cb;
}

static void start_cluster(struct cluster *c, uint32_t protocol) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->net.lock, NULL);
    pthread_cond_init(&c->net.ready, NULL);
    for (uint64_t i = 0; i < NODES; i++) c->peers[i] = i + 1;
    CHECK(pthread_create(&c->net.thread, NULL, net_run, &c->net) == 0);
    for (uint64_t id = 1; id <= NODES; id++) {
        struct host *h = &c->hosts[id];
        h->net = &c->net;
        h->id = id;
        pthread_mutex_init(&h->lock, NULL);
        consenso_node_config cfg = config_for(protocol, id, c->peers);
        consenso_node_callbacks cb = callbacks_for(h);
        consenso_node *node = NULL;
        OK(consenso_node_start(&cfg, &cb, &node));
        h->self = node;
        pthread_mutex_lock(&c->net.lock);
        c->net.nodes[id] = node;
        pthread_mutex_unlock(&c->net.lock);
    }
}

static consenso_node_status status_of(consenso_node *node) {
    consenso_node_status s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    OK(consenso_node_get_status(node, &s));
    return s;
}

static uint64_t wait_for_leader(struct cluster *c) {
    for (int tries = 0; tries < 1000; tries++) {
        for (uint64_t id = 1; id <= NODES; id++) {
            if (!c->net.nodes[id]) continue;
            consenso_node_status s = status_of(c->net.nodes[id]);
            if (s.role == CONSENSO_ROLE_LEADER) return id;
        }
        sleep_ms(10);
    }
    CHECK(!"a leader within 10 s");
    return 0;
}

static void stop_cluster(struct cluster *c) {
    /* The network stops first: nothing is delivered to a freed node. */
    pthread_mutex_lock(&c->net.lock);
    c->net.stop = 1;
    pthread_cond_signal(&c->net.ready);
    pthread_mutex_unlock(&c->net.lock);
    pthread_join(c->net.thread, NULL);
    for (uint64_t id = 1; id <= NODES; id++) {
        struct host *h = &c->hosts[id];
        if (h->self) {
            OK(consenso_node_free(h->self));
            h->self = NULL;
        }
        CHECK(atomic_load(&h->frees) == 1);
        pthread_mutex_destroy(&h->lock);
    }
    /* What the nodes sent while they stopped. */
    while (c->net.head) {
        struct message *m = c->net.head;
        c->net.head = m->next;
        free(m);
    }
    pthread_mutex_destroy(&c->net.lock);
    pthread_cond_destroy(&c->net.ready);
}

/* ------------------------------------------------ tests */

static atomic_int async_done, async_ok;

static void on_done(void *user_data, consenso_result result, const uint8_t *response, size_t len,
                    uint64_t index, uint64_t leader) {
    (void)user_data;
    (void)index;
    (void)leader;
    if (result == CONSENSO_RESULT_OK && len > 3 && memcmp(response, "ok:", 3) == 0) atomic_fetch_add(&async_ok, 1);
    atomic_fetch_add(&async_done, 1);
}

static void test_cluster(uint32_t protocol) {
    static struct cluster c;
    start_cluster(&c, protocol);
    uint64_t leader = wait_for_leader(&c);
    consenso_node *node = c.net.nodes[leader];
    /* A follower refuses and names the leader. */
    uint64_t follower = leader % NODES + 1, hint = 99;
    uint32_t v = 0;
    consenso_result r = consenso_node_propose(c.net.nodes[follower], (const uint8_t *)&v, sizeof v, 1000, NULL, &hint);
    CHECK(r == CONSENSO_RESULT_NOT_LEADER);
    CHECK(hint == leader || hint == 0);
    size_t proposed = 0;
    for (uint32_t i = 1; i <= 300; i++) {
        consenso_bytes *resp = NULL;
        consenso_result pr = consenso_node_propose(node, (const uint8_t *)&i, sizeof i, 5000, &resp, NULL);
        CHECK(pr == CONSENSO_RESULT_OK);
        const uint8_t *data;
        size_t len;
        OK(consenso_bytes_data(resp, &data, &len));
        CHECK(len > 3 && memcmp(data, "ok:", 3) == 0);
        consenso_bytes_free(resp);
        proposed++;
    }
    atomic_store(&async_done, 0);
    atomic_store(&async_ok, 0);
    for (uint32_t i = 301; i <= 500; i++) OK(consenso_node_propose_async(node, (const uint8_t *)&i, sizeof i, on_done, NULL));
    for (int t = 0; t < 1000 && atomic_load(&async_done) < 200; t++) sleep_ms(10);
    CHECK(atomic_load(&async_ok) == 200);
    uint64_t index = 0;
    OK(consenso_node_read_barrier(node, 5000, &index, NULL));
    CHECK(index >= 500);
    /* Every node applies the same 500 values in the same order. */
    for (int t = 0; t < 1000; t++) {
        int all = 1;
        for (uint64_t id = 1; id <= NODES; id++) {
            pthread_mutex_lock(&c.hosts[id].lock);
            all &= c.hosts[id].count >= 500;
            pthread_mutex_unlock(&c.hosts[id].lock);
        }
        if (all) break;
        sleep_ms(10);
    }
    for (uint64_t id = 1; id <= NODES; id++) {
        CHECK(c.hosts[id].count == 500);
        CHECK(memcmp(c.hosts[id].applied, c.hosts[1].applied, 500 * sizeof(uint32_t)) == 0);
    }
    for (uint32_t i = 0; i < 300; i++) CHECK(c.hosts[1].applied[i] == i + 1);
    consenso_node_status s = status_of(node);
    CHECK(s.id == leader && s.commit_index >= 500 && s.applied_index >= 500 && !s.closed);
    /* Stop the leader: another is elected and commits. */
    pthread_mutex_lock(&c.net.lock);
    c.net.nodes[leader] = NULL;
    pthread_mutex_unlock(&c.net.lock);
    OK(consenso_node_shutdown(node));
    CHECK(consenso_node_shutdown(node) == CONSENSO_RESULT_CLOSED);
    CHECK(consenso_node_propose(node, (const uint8_t *)&v, sizeof v, 1000, NULL, NULL) == CONSENSO_RESULT_CLOSED);
    CHECK(status_of(node).closed);
    uint64_t next = wait_for_leader(&c);
    CHECK(next != leader);
    uint32_t after = 501;
    OK(consenso_node_propose(c.net.nodes[next], (const uint8_t *)&after, sizeof after, 5000, NULL, NULL));
    stop_cluster(&c);
    printf("node_test: protocol %u elected %llu then %llu, %zu + 200 commands in one order\n", protocol,
           (unsigned long long)leader, (unsigned long long)next, proposed);
}

static atomic_int inline_refusals;

static void free_from_completion(void *user_data, consenso_result result, const uint8_t *response, size_t len,
                                 uint64_t index, uint64_t leader) {
    (void)response, (void)len, (void)index, (void)leader;
    consenso_node *node = user_data;
    if (result == CONSENSO_RESULT_CLOSED && consenso_node_free(node) == CONSENSO_RESULT_WOULD_BLOCK &&
        consenso_node_shutdown(node) == CONSENSO_RESULT_WOULD_BLOCK)
        atomic_fetch_add(&inline_refusals, 1);
}

static void test_completion_on_the_callers_thread(void) {
    uint64_t alone[1] = {1};
    consenso_node_config cfg = config_for(1, 1, alone);
    cfg.peers_len = 1;
    struct host h;
    memset(&h, 0, sizeof h);
    consenso_node_callbacks cb = callbacks_for(&h);
    consenso_node *node = NULL;
    OK(consenso_node_start(&cfg, &cb, &node));
    OK(consenso_node_shutdown(node));
    uint8_t x = 1;
    OK(consenso_node_propose_async(node, &x, 1, free_from_completion, node));
    OK(consenso_node_read_barrier_async(node, free_from_completion, node));
    CHECK(atomic_load(&inline_refusals) == 2);
    OK(consenso_node_free(node));
    CHECK(atomic_load(&h.frees) == 1);
}

static void test_bad_input(void) {
    uint64_t peers[NODES] = {1, 2, 3};
    struct host h;
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.lock, NULL);
    struct network net;
    memset(&net, 0, sizeof net);
    pthread_mutex_init(&net.lock, NULL);
    h.net = &net;
    h.id = 1;
    consenso_node_callbacks cb = callbacks_for(&h);
    consenso_node *node = NULL;
    char msg[256];
    size_t needed = 0;

    /* Invalid settings: nothing starts, user_data is not freed. */
    size_t n = 0;
#define BAD(name, body)                                          \
    do {                                                         \
        consenso_node_config cfg = config_for(1, 1, peers);      \
        body;                                                    \
        node = NULL;                                             \
        CHECK(consenso_node_start(&cfg, &cb, &node) == CONSENSO_RESULT_INVALID_ARGUMENT); \
        CHECK(node == NULL);                                     \
        OK(consenso_last_error_message(msg, sizeof msg, &needed)); \
        CHECK(needed == strlen(msg) && strstr(msg, name) != NULL); \
        n++;                                                     \
    } while (0)
    BAD("voters", cfg.peers_len = 0);
    BAD("id", cfg.id = 0);
    BAD("id", cfg.id = 9);
    static const uint64_t dup[3] = {1, 2, 2};
    BAD("voters", cfg.peers = dup);
    BAD("election", cfg.election_timeout_min_ms = cfg.election_timeout_max_ms = 10);
    BAD("protocol", cfg.protocol = 7);
    BAD("struct_size", cfg.struct_size = 0);
    /* A size that ends inside a field (half a pointer) is refused too. */
    BAD("struct_size", cfg.struct_size = (uint32_t)(offsetof(consenso_node_config, data_dir) + 4));
    CHECK(n == 8);
    CHECK(atomic_load(&h.frees) == 0);
    /* The message fits exactly, or is reported too long with its size. */
    char tiny[4];
    size_t need2 = 0;
    CHECK(consenso_last_error_message(tiny, sizeof tiny, &need2) == CONSENSO_RESULT_BUFFER_TOO_SMALL);
    CHECK(need2 == needed);
    CHECK(consenso_last_error_message(NULL, 0, &need2) == CONSENSO_RESULT_BUFFER_TOO_SMALL && need2 == needed);
    consenso_node_config good = config_for(1, 1, peers);
    consenso_node_callbacks short_cb = cb;
    short_cb.struct_size = (uint32_t)(offsetof(consenso_node_callbacks, apply) + 4);
    CHECK(consenso_node_start(&good, &short_cb, &node) == CONSENSO_RESULT_INVALID_ARGUMENT);

    consenso_node_config cfg = config_for(1, 1, peers);
    CHECK(consenso_node_start(NULL, &cb, &node) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_node_start(&cfg, NULL, &node) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_node_start(&cfg, &cb, NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    consenso_node_callbacks no_send = cb;
    no_send.send = NULL;
    CHECK(consenso_node_start(&cfg, &no_send, &node) == CONSENSO_RESULT_NULL_ARGUMENT);
    cfg.peers = NULL;
    CHECK(consenso_node_start(&cfg, &cb, &node) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(atomic_load(&h.frees) == 0);

    /* A lone node (its own quorum) with callbacks that call back in. */
    uint64_t alone[1] = {1};
    cfg = config_for(1, 1, alone);
    cfg.peers_len = 1;
    OK(consenso_node_start(&cfg, &cb, &node));
    h.self = node;
    for (int t = 0; t < 500 && status_of(node).role != CONSENSO_ROLE_LEADER; t++) sleep_ms(10);
    CHECK(status_of(node).role == CONSENSO_ROLE_LEADER);
    uint8_t garbage[5] = {1, 2, 3, 4, 5};
    CHECK(consenso_node_receive(node, 2, garbage, sizeof garbage) == CONSENSO_RESULT_MALFORMED_MESSAGE);
    CHECK(consenso_node_receive(node, 2, garbage, 0) == CONSENSO_RESULT_MALFORMED_MESSAGE);
    CHECK(consenso_node_receive(node, 2, NULL, 0) == CONSENSO_RESULT_MALFORMED_MESSAGE);
    CHECK(consenso_node_receive(node, 2, NULL, 3) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_node_receive(NULL, 2, garbage, 5) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(status_of(node).messages_rejected >= 3);
    CHECK(consenso_node_propose(NULL, garbage, 1, 10, NULL, NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_node_propose_async(node, garbage, 1, NULL, NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_node_read_barrier(node, 1000, NULL, NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    consenso_node_status small;
    small.struct_size = 4;
    CHECK(consenso_node_get_status(node, &small) == CONSENSO_RESULT_INVALID_ARGUMENT);
    small.struct_size = sizeof small - 1;
    CHECK(consenso_node_get_status(node, &small) == CONSENSO_RESULT_INVALID_ARGUMENT);
    /* A later caller's larger status struct: this version's bytes are
     * written, and struct_size says how many. */
    struct { consenso_node_status s; uint8_t extra[16]; } later;
    memset(&later, 0xAB, sizeof later);
    later.s.struct_size = sizeof later;
    OK(consenso_node_get_status(node, &later.s));
    CHECK(later.s.id == 1 && later.s.struct_size == sizeof(consenso_node_status));
    CHECK(later.extra[0] == 0xAB && later.extra[15] == 0xAB);
    /* A completion run on this thread (the node refuses at once) may not
     * free or shut down its node either. */
    test_completion_on_the_callers_thread();
    /* Shutdown, free and a blocking propose from inside apply: refused. */
    atomic_store(&h.call_back_in, 1);
    uint32_t one = 1;
    OK(consenso_node_propose(node, (const uint8_t *)&one, sizeof one, 5000, NULL, NULL));
    CHECK(atomic_load(&h.refusals) == 3);
    atomic_store(&h.call_back_in, 0);
    /* A failed apply stops the node. */
    atomic_store(&h.fail_at, 1);
    consenso_result failed = consenso_node_propose(node, (const uint8_t *)&one, sizeof one, 5000, NULL, NULL);
    CHECK(failed == CONSENSO_RESULT_CLOSED);
    CHECK(status_of(node).state_machine_failed);
    CHECK(consenso_node_shutdown(node) == CONSENSO_RESULT_CLOSED);
    CHECK(atomic_load(&h.frees) == 0);
    OK(consenso_node_free(node));
    CHECK(atomic_load(&h.frees) == 1);
    OK(consenso_node_free(NULL));
    consenso_bytes_free(NULL);
    CHECK(consenso_response_write(NULL, garbage, 1) == CONSENSO_RESULT_NULL_ARGUMENT);
    pthread_mutex_destroy(&h.lock);
    pthread_mutex_destroy(&net.lock);
    printf("node_test: bad input refused with the documented codes\n");
}

/* ------------------------------------------------ stress */

static atomic_int stress_stop;
static atomic_long submitted, completed;
static struct cluster stress;

static void on_stress_done(void *user_data, consenso_result result, const uint8_t *response, size_t len,
                           uint64_t index, uint64_t leader) {
    (void)user_data, (void)result, (void)response, (void)len, (void)index, (void)leader;
    atomic_fetch_add(&completed, 1);
}

/* Proposes (async and blocking) and receives garbage on every node. */
static void *stress_worker(void *arg) {
    uint32_t seed = (uint32_t)(uintptr_t)arg;
    uint8_t junk[7] = {9, 9, 9, 9, 9, 9, 9};
    while (!atomic_load(&stress_stop)) {
        seed = seed * 1103515245u + 12345u;
        consenso_node *node = stress.hosts[1 + seed % NODES].self;
        uint32_t v = seed;
        if (seed & 1) {
            atomic_fetch_add(&submitted, 1);
            OK(consenso_node_propose_async(node, (const uint8_t *)&v, sizeof v, on_stress_done, NULL));
        } else {
            consenso_result r = consenso_node_propose(node, (const uint8_t *)&v, sizeof v, 50, NULL, NULL);
            CHECK(r == CONSENSO_RESULT_OK || r == CONSENSO_RESULT_NOT_LEADER || r == CONSENSO_RESULT_TIMEOUT ||
                  r == CONSENSO_RESULT_CLOSED || r == CONSENSO_RESULT_BUSY || r == CONSENSO_RESULT_DROPPED);
        }
        CHECK(consenso_node_receive(node, 2, junk, sizeof junk) != CONSENSO_RESULT_OK);
    }
    return NULL;
}

static void *stress_reader(void *unused) {
    (void)unused;
    while (!atomic_load(&stress_stop))
        for (uint64_t id = 1; id <= NODES; id++) (void)status_of(stress.hosts[id].self);
    return NULL;
}

/* 16 threads propose and receive while another reads status; a node is
 * shut down in the middle. Nothing crashes, and every completion is called
 * exactly once. */
static void test_stress(void) {
    start_cluster(&stress, CONSENSO_PROTOCOL_RAFT);
    (void)wait_for_leader(&stress);
    pthread_t workers[16], reader;
    for (uintptr_t i = 0; i < 16; i++) CHECK(pthread_create(&workers[i], NULL, stress_worker, (void *)(i + 1)) == 0);
    CHECK(pthread_create(&reader, NULL, stress_reader, NULL) == 0);
    sleep_ms(700);
    uint64_t leader = wait_for_leader(&stress);
    OK(consenso_node_shutdown(stress.hosts[leader].self));
    sleep_ms(700);
    atomic_store(&stress_stop, 1);
    for (int i = 0; i < 16; i++) pthread_join(workers[i], NULL);
    pthread_join(reader, NULL);
    stop_cluster(&stress);
    CHECK(atomic_load(&completed) == atomic_load(&submitted));
    printf("node_test: stress: %ld async proposals from 16 threads, each completed once, a shutdown midway\n",
           (long)atomic_load(&submitted));
}

/* ------------------------------------------------ log, snapshots, foreign bytes */

static atomic_int logged_errors;
static atomic_int logged_failure;

static void on_log(void *user_data, uint32_t level, const char *message) {
    (void)user_data;
    if (level == CONSENSO_LOG_LEVEL_ERROR) atomic_fetch_add(&logged_errors, 1);
    if (strstr(message, "state machine failed") != NULL) atomic_fetch_add(&logged_failure, 1);
}

static void test_log_callback(void) {
    CHECK(consenso_set_log_callback(on_log, NULL, 9) == CONSENSO_RESULT_INVALID_ARGUMENT);
    OK(consenso_set_log_callback(on_log, NULL, CONSENSO_LOG_LEVEL_WARN));
    uint64_t alone[1] = {1};
    consenso_node_config cfg = config_for(1, 1, alone);
    cfg.peers_len = 1;
    struct host h;
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.lock, NULL);
    atomic_store(&h.fail_at, 1);
    consenso_node_callbacks cb = callbacks_for(&h);
    consenso_node *node = NULL;
    OK(consenso_node_start(&cfg, &cb, &node));
    uint32_t one = 1;
    for (int t = 0; t < 500; t++) {
        consenso_result r = consenso_node_propose(node, (const uint8_t *)&one, sizeof one, 1000, NULL, NULL);
        if (r == CONSENSO_RESULT_CLOSED) break;
        sleep_ms(10);
    }
    OK(consenso_node_free(node));
    CHECK(atomic_load(&logged_failure) >= 1 && atomic_load(&logged_errors) >= 1);
    /* NULL stops logging. */
    OK(consenso_set_log_callback(NULL, NULL, CONSENSO_LOG_LEVEL_TRACE));
    pthread_mutex_destroy(&h.lock);
    printf("node_test: log events reach the callback\n");
}

/* A state machine that is a count and a sum, snapshotted and restored. */
struct counter {
    pthread_mutex_t lock;
    uint64_t count, sum, applies, restored_at;
    int refuse_restore;
};

static int32_t counter_apply(void *user_data, uint64_t index, const uint8_t *command, size_t len,
                             consenso_response *response) {
    struct counter *c = user_data;
    (void)index, (void)response;
    uint32_t v = 0;
    if (len == sizeof v) memcpy(&v, command, sizeof v);
    pthread_mutex_lock(&c->lock);
    c->count++;
    c->sum += v;
    c->applies++;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static int32_t counter_snapshot(void *user_data, consenso_response *out) {
    struct counter *c = user_data;
    pthread_mutex_lock(&c->lock);
    uint64_t state[2] = {c->count, c->sum};
    pthread_mutex_unlock(&c->lock);
    return consenso_response_write(out, (const uint8_t *)state, sizeof state) == CONSENSO_RESULT_OK ? 0 : 1;
}

static int32_t counter_restore(void *user_data, uint64_t index, const uint8_t *bytes, size_t len) {
    struct counter *c = user_data;
    if (c->refuse_restore || len != 2 * sizeof(uint64_t)) return 1;
    uint64_t state[2];
    memcpy(state, bytes, sizeof state);
    pthread_mutex_lock(&c->lock);
    c->count = state[0];
    c->sum = state[1];
    c->restored_at = index;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static consenso_node *start_counter(struct counter *c, const char *dir, consenso_result *result) {
    static uint64_t alone[1] = {1};
    consenso_node_config cfg = config_for(1, 1, alone);
    cfg.peers_len = 1;
    cfg.data_dir = dir;
    cfg.snapshot_entries = 50;
    consenso_node_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.user_data = c;
    cb.send = host_send;
    cb.apply = counter_apply;
    cb.snapshot = counter_snapshot;
    cb.restore = counter_restore;
    consenso_node *node = NULL;
    *result = consenso_node_start(&cfg, &cb, &node);
    return node;
}

static void test_snapshots_and_restore(void) {
    char dir[] = "/tmp/consenso-node-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct counter first;
    memset(&first, 0, sizeof first);
    pthread_mutex_init(&first.lock, NULL);
    consenso_result r;
    consenso_node *node = start_counter(&first, dir, &r);
    OK(r);
    for (int t = 0; t < 500 && status_of(node).role != CONSENSO_ROLE_LEADER; t++) sleep_ms(10);
    for (uint32_t v = 1; v <= 200; v++)
        OK(consenso_node_propose(node, (const uint8_t *)&v, sizeof v, 5000, NULL, NULL));
    consenso_node_status s = status_of(node);
    CHECK(s.snapshots_taken >= 3 && s.snapshot_index >= 150);
    OK(consenso_node_free(node));
    CHECK(first.count == 200 && first.sum == 200 * 201 / 2);

    /* A restart restores the snapshot and applies only what follows it. */
    struct counter second;
    memset(&second, 0, sizeof second);
    pthread_mutex_init(&second.lock, NULL);
    node = start_counter(&second, dir, &r);
    OK(r);
    for (int t = 0; t < 500 && second.count < 200; t++) sleep_ms(10);
    pthread_mutex_lock(&second.lock);
    CHECK(second.count == 200 && second.sum == 200 * 201 / 2);
    CHECK(second.restored_at >= 150 && second.applies < 60);
    pthread_mutex_unlock(&second.lock);
    OK(consenso_node_free(node));

    /* A machine that refuses the snapshot: the node does not start. */
    struct counter refusing;
    memset(&refusing, 0, sizeof refusing);
    pthread_mutex_init(&refusing.lock, NULL);
    refusing.refuse_restore = 1;
    node = start_counter(&refusing, dir, &r);
    CHECK(r == CONSENSO_RESULT_RESTORE && node == NULL);
    char msg[256];
    size_t needed;
    OK(consenso_last_error_message(msg, sizeof msg, &needed));
    CHECK(strstr(msg, "refused") != NULL);
    pthread_mutex_destroy(&first.lock);
    pthread_mutex_destroy(&second.lock);
    pthread_mutex_destroy(&refusing.lock);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    printf("node_test: snapshots taken, restored on a restart, a refusal refuses the start\n");
}

/* Captures the first message a node sends. */
static uint8_t captured[4096];
static atomic_size_t captured_len;

static void capture_send(void *user_data, uint64_t to, const uint8_t *bytes, size_t len) {
    (void)user_data, (void)to;
    if (atomic_load(&captured_len) == 0 && len <= sizeof captured) {
        memcpy(captured, bytes, len);
        atomic_store(&captured_len, len);
    }
}

static consenso_node *start_pair_node(uint32_t protocol, uint64_t id, uint64_t cluster, struct host *h,
                                      void (*send)(void *, uint64_t, const uint8_t *, size_t)) {
    static uint64_t pair[2] = {1, 2};
    consenso_node_config cfg = config_for(protocol, id, pair);
    cfg.peers_len = 2;
    cfg.cluster_id = cluster;
    consenso_node_callbacks cb = callbacks_for(h);
    cb.send = send;
    consenso_node *node = NULL;
    OK(consenso_node_start(&cfg, &cb, &node));
    return node;
}

static void test_foreign_and_truncated_bytes(void) {
    struct host h;
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.lock, NULL);
    consenso_node *talker = start_pair_node(CONSENSO_PROTOCOL_RAFT, 1, 7, &h, capture_send);
    for (int t = 0; t < 500 && atomic_load(&captured_len) == 0; t++) sleep_ms(10);
    size_t len = atomic_load(&captured_len);
    CHECK(len > 0);
    OK(consenso_node_free(talker));
    /* Node 2 of the same cluster and protocol takes it whole ... */
    consenso_node *same = start_pair_node(CONSENSO_PROTOCOL_RAFT, 2, 7, &h, host_send_nowhere);
    OK(consenso_node_receive(same, 1, captured, len));
    /* ... but not truncated, */
    for (size_t cut = 0; cut < len; cut += 1 + len / 16)
        CHECK(consenso_node_receive(same, 1, captured, cut) == CONSENSO_RESULT_MALFORMED_MESSAGE);
    OK(consenso_node_free(same));
    /* nor from another cluster, nor for another protocol. */
    consenso_node *other_cluster = start_pair_node(CONSENSO_PROTOCOL_RAFT, 2, 8, &h, host_send_nowhere);
    CHECK(consenso_node_receive(other_cluster, 1, captured, len) == CONSENSO_RESULT_MALFORMED_MESSAGE);
    OK(consenso_node_free(other_cluster));
    consenso_node *other_protocol = start_pair_node(CONSENSO_PROTOCOL_PAXOS, 2, 7, &h, host_send_nowhere);
    CHECK(consenso_node_receive(other_protocol, 1, captured, len) == CONSENSO_RESULT_MALFORMED_MESSAGE);
    OK(consenso_node_free(other_protocol));
    pthread_mutex_destroy(&h.lock);
    printf("node_test: a %zu-byte message is taken whole, refused truncated or foreign\n", len);
}

/* A send that blocks holds up messages, not the node: it goes on timing
 * out and campaigning (sending more) while the first send is stuck. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_open = PTHREAD_COND_INITIALIZER;
static int gate_released;
static atomic_int blocked_sends;

static void blocking_send(void *user_data, uint64_t to, const uint8_t *bytes, size_t len) {
    (void)user_data, (void)to, (void)bytes, (void)len;
    atomic_fetch_add(&blocked_sends, 1);
    pthread_mutex_lock(&gate_lock);
    while (!gate_released) pthread_cond_wait(&gate_open, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void test_a_blocked_send_does_not_stop_the_node(void) {
    struct host h;
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.lock, NULL);
    consenso_node *node = start_pair_node(CONSENSO_PROTOCOL_RAFT, 1, 0, &h, blocking_send);
    int progressed = 0;
    for (int t = 0; t < 1000 && !progressed; t++) {
        progressed = status_of(node).messages_sent >= 3;
        sleep_ms(10);
    }
    CHECK(progressed);
    CHECK(atomic_load(&blocked_sends) == 1);
    pthread_mutex_lock(&gate_lock);
    gate_released = 1;
    pthread_cond_broadcast(&gate_open);
    pthread_mutex_unlock(&gate_lock);
    OK(consenso_node_free(node));
    CHECK(atomic_load(&h.frees) == 1);
    pthread_mutex_destroy(&h.lock);
    printf("node_test: a send blocked in its first call; the node went on sending meanwhile\n");
}

int main(void) {
    test_a_blocked_send_does_not_stop_the_node();
    test_log_callback();
    test_snapshots_and_restore();
    test_foreign_and_truncated_bytes();
    test_bad_input();
    test_cluster(CONSENSO_PROTOCOL_RAFT);
    test_cluster(CONSENSO_PROTOCOL_PAXOS);
    test_cluster(CONSENSO_PROTOCOL_ZAB);
    test_stress();
    printf("node_test: %d checks passed\n", atomic_load(&checks));
    return 0;
}
