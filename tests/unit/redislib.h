/*
 * redislib.h - a redis-server of a test's own, for the Criterion suites
 * that test the Redis backends (test_state, test_pipe)
 *
 * start_redis() starts one on a free loopback port (retrying when the
 * port was taken before it bound) and checks by INFO's process_id that
 * what answers there is ours; raw_cmd() sends one command in Redis's
 * protocol on a connection of its own; client_kill() closes every other
 * client; stop_redis() kills and reaps it; expect_timed_out() checks the state after a call that only
 * timed out. Include after testlib.h (free_port) and state.h.
 */
#ifndef XM_REDISLIB_H
#define XM_REDISLIB_H

#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

/* stop_redis - kill the test's redis-server PID and reap it */
static inline void
stop_redis(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* is_pid - the Redis at the other end of FD is process PID (INFO) */
static inline bool
is_pid(int fd, pid_t pid)
{
	static const char cmd[] = "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n";
	struct timeval tmo = { 5, 0 };   /* not a Redis: it may never answer */
	char buf[16384], *p;
	size_t len = 0;
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	if (write(fd, cmd, sizeof(cmd) - 1) != (ssize_t)sizeof(cmd) - 1)
		return false;
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len,
	    sizeof(buf) - 1 - len)) > 0) {
		len += (size_t)n;
		buf[len] = '\0';
		if ((p = strstr(buf, "process_id:")) != NULL &&
		    strstr(p, "\r\n") != NULL)
			return strtol(p + 11, NULL, 10) == (long)pid;
	}
	return false;
}

/* try_redis - a redis-server of our own on PORT; its pid, or -1 when it
 * exited (the port was taken since free_port saw it free) */
static inline pid_t
try_redis(int port)
{
	char p[16];
	pid_t pid;
	int i;

	snprintf(p, sizeof(p), "%d", port);
	if ((pid = fork()) == 0) {
		freopen("/dev/null", "w", stdout);
		execlp("redis-server", "redis-server", "--port", p, "--bind",
		    "127.0.0.1", "--save", "", "--appendonly", "no", (char *)NULL);
		_exit(127);
	}
	cr_assert(pid > 0);
	for (i = 0; i < 200; i++) {   /* up to 10 s */
		struct sockaddr_in sin = { .sin_family = AF_INET,
		    .sin_port = htons((uint16_t)port) };
		int fd = socket(AF_INET, SOCK_STREAM, 0), st;

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		/* exited first: whatever accepts there is not ours */
		if (waitpid(pid, &st, WNOHANG) == pid) {
			close(fd);
			cr_assert(!WIFEXITED(st) || WEXITSTATUS(st) != 127,
			    "redis-server: is it installed?");
			return -1;
		}
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
			bool ours = is_pid(fd, pid);

			close(fd);
			if (ours)
				return pid;
			stop_redis(pid);
			return -1;
		}
		close(fd);
		usleep(50000);
	}
	kill(pid, SIGKILL);
	cr_assert_fail("redis-server did not start");
	return -1;
}

/* start_redis - a redis-server of our own on a free port (*PORT); its
 * pid. A port free when probed may be taken before redis-server binds
 * it (any process's connect or bind to port 0): then another one. */
static inline pid_t
start_redis(int *port)
{
	pid_t pid = -1;
	int i;

	for (i = 0; i < 5 && pid < 0; i++)
		pid = try_redis(*port = free_port());
	cr_assert(pid > 0, "redis-server did not start on any of 5 ports");
	return pid;
}


/* raw_cmd - send CMD (RESP) on a connection of our own to PORT and read
 * the reply into REPLY (blocking: the server must be running); its
 * length, or -1 */
static inline ssize_t
raw_cmd(int port, const char *cmd, char *reply, size_t len)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ssize_t n;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(fd >= 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(write(fd, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
	n = read(fd, reply, len - 1);
	close(fd);
	if (n > 0)
		reply[n] = '\0';
	return n;
}

/* client_kill - CLIENT KILL TYPE normal on a connection of our own to
 * PORT: the server closes every other client; how many, or -1 */
static inline long long
client_kill(int port)
{
	static const char cmd[] = "*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n"
	    "$4\r\nTYPE\r\n$6\r\nnormal\r\n";
	char reply[256];
	ssize_t n = raw_cmd(port, cmd, reply, sizeof(reply));

	if (n <= 0)
		return -1;
	return reply[0] == ':' ? strtoll(reply + 1, NULL, 10) : -1;
}

/* expect_timed_out - the state after a Redis call that only timed out:
 * Redis still up, FALLBACK batches counted in memory, ERRORS errors,
 * health not degraded (B: a buffer for the health lines, filled) */
static inline void
expect_timed_out(struct xm_buf *b, unsigned long long fallback,
    unsigned long long errors)
{
	struct xm_state_stats st;

	xm_state_stats(&st);
	cr_expect(st.redis_up, "a timeout marked Redis down");
	cr_expect_eq(st.fallback_ops, fallback, "fallback ops %llu",
	    st.fallback_ops);
	cr_expect_eq(st.redis_errors, errors, "errors %llu", st.redis_errors);
	cr_expect(xm_state_status(b), "health degraded by a timeout: %s",
	    b->data);
}

#endif
