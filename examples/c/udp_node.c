/* One consensus node per process, over UDP on 127.0.0.1.
 *
 *     udp_node --id 1 --ports 7001,7002,7003 [--protocol raft|paxos|zab] [--seconds 8]
 *
 * Node i listens on the i-th port. Its send callback is one sendto(); a
 * thread of this program's own receives datagrams and hands them to
 * consenso_node_receive (the sender is known by its port). While it leads,
 * the node proposes a numbered command every few milliseconds. It prints
 *
 *     leader <id> term <term>      when it becomes the leader
 *     committed <n>                now and then while it leads
 *     applied <count> <hash>       when its time is up
 *
 * and exits; nodes that applied the same commands print the same line.
 * examples/c/udp_cluster.sh starts three, kills the leader's process and
 * checks that the survivors elect another and keep every command. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "consenso.h"

#define NODES 3

static int sock = -1;
static uint16_t ports[NODES + 1];
static uint64_t me;
static consenso_node *node;
static volatile int running = 1;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t applied_count;
static uint64_t applied_hash = 1469598103934665603ULL; /* FNV-1a over the commands */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void on_send(void *user_data, uint64_t to, const uint8_t *bytes, size_t len) {
    (void)user_data;
    if (to == 0 || to > NODES) return;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(ports[to]);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A datagram lost or refused is the protocol's to retry. */
    (void)sendto(sock, bytes, len, 0, (struct sockaddr *)&addr, sizeof addr);
}

static int32_t on_apply(void *user_data, uint64_t index, const uint8_t *command, size_t len,
                        consenso_response *response) {
    (void)user_data;
    (void)index;
    (void)response;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < len; i++) applied_hash = (applied_hash ^ command[i]) * 1099511628211ULL;
    applied_count++;
    pthread_mutex_unlock(&lock);
    return 0;
}

static void on_state_change(void *user_data, consenso_role role, uint64_t term, uint64_t leader) {
    (void)user_data;
    (void)leader;
    if (role == CONSENSO_ROLE_LEADER) {
        printf("leader %llu term %llu\n", (unsigned long long)me, (unsigned long long)term);
        fflush(stdout);
    }
}

/* Hands every datagram to the node, the sender known by its port. */
static void *receive_loop(void *unused) {
    (void)unused;
    static uint8_t buf[65536];
    while (running) {
        struct sockaddr_in from;
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(sock, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
        if (n < 0) continue; /* the receive timeout: look at `running` */
        uint16_t port = ntohs(from.sin_port);
        for (uint64_t id = 1; id <= NODES; id++)
            if (ports[id] == port) (void)consenso_node_receive(node, id, buf, (size_t)n);
    }
    return NULL;
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s --id N --ports P1,P2,P3 [--protocol raft|paxos|zab] [--seconds S]\n", argv0);
    exit(2);
}

int main(int argc, char **argv) {
    uint32_t protocol = CONSENSO_PROTOCOL_RAFT;
    double seconds = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--id") == 0) me = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--ports") == 0) {
            unsigned a, b, c;
            if (sscanf(argv[i + 1], "%u,%u,%u", &a, &b, &c) != 3) usage(argv[0]);
            ports[1] = (uint16_t)a;
            ports[2] = (uint16_t)b;
            ports[3] = (uint16_t)c;
        } else if (strcmp(argv[i], "--protocol") == 0) {
            const char *p = argv[i + 1];
            if (strcmp(p, "raft") == 0) protocol = CONSENSO_PROTOCOL_RAFT;
            else if (strcmp(p, "paxos") == 0) protocol = CONSENSO_PROTOCOL_PAXOS;
            else if (strcmp(p, "zab") == 0) protocol = CONSENSO_PROTOCOL_ZAB;
            else usage(argv[0]);
        } else usage(argv[0]);
    }
    if (me < 1 || me > NODES || ports[1] == 0) usage(argv[0]);

    sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(ports[me]);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (sock < 0 || bind(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("udp_node: bind");
        return 1;
    }
    struct timeval tick;
    tick.tv_sec = 0;
    tick.tv_usec = 100000;
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);

    uint64_t peers[NODES] = {1, 2, 3};
    consenso_node_config config;
    consenso_node_config_default(&config);
    config.protocol = protocol;
    config.id = me;
    config.peers = peers;
    config.peers_len = NODES;
    config.max_bytes_per_message = 16 * 1024; /* a message fits in one datagram */
    consenso_node_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.send = on_send;
    cb.apply = on_apply;
    cb.on_state_change = on_state_change;
    consenso_result r = consenso_node_start(&config, &cb, &node);
    if (r != CONSENSO_RESULT_OK) {
        char detail[256];
        size_t needed;
        if (consenso_last_error_message(detail, sizeof detail, &needed) != CONSENSO_RESULT_OK) detail[0] = 0;
        fprintf(stderr, "udp_node: start failed: %s\n", detail);
        return 1;
    }
    pthread_t receiver;
    pthread_create(&receiver, NULL, receive_loop, NULL);

    /* Propose while leading, until shortly before the time is up; then
     * give the followers time to apply everything committed. */
    double start = now(), stop_proposing = start + seconds - 2.0;
    uint32_t counter = 0;
    while (now() < start + seconds) {
        consenso_node_status s;
        memset(&s, 0, sizeof s);
        s.struct_size = sizeof s;
        if (now() < stop_proposing && consenso_node_get_status(node, &s) == CONSENSO_RESULT_OK &&
            s.role == CONSENSO_ROLE_LEADER) {
            uint8_t command[12];
            uint64_t who = me;
            memcpy(command, &who, 8);
            memcpy(command + 8, &counter, 4);
            if (consenso_node_propose(node, command, sizeof command, 1000, NULL, NULL) == CONSENSO_RESULT_OK &&
                ++counter % 100 == 0) {
                printf("committed %llu\n", (unsigned long long)s.commit_index + 1);
                fflush(stdout);
            }
        } else {
            struct timespec t = {0, 10000000L};
            nanosleep(&t, NULL);
        }
    }
    running = 0;
    (void)consenso_node_shutdown(node);
    pthread_join(receiver, NULL);
    pthread_mutex_lock(&lock);
    printf("applied %llu %016llx\n", (unsigned long long)applied_count, (unsigned long long)applied_hash);
    pthread_mutex_unlock(&lock);
    (void)consenso_node_free(node);
    close(sock);
    return 0;
}
