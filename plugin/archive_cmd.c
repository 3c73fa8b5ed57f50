/*
 * archive_cmd.c - an external command fed one JSON record per line
 *
 * The command (/bin/sh -c COMMAND) runs for as long as the daemon does,
 * reading records on its standard input. Writes are blocking on the sink's
 * own thread: a slow consumer fills the pipe, the writer waits, the sink's
 * queue fills, and beyond `queue` best-effort records are counted as
 * overflow (back-pressure never reaches the event loop). When the command
 * exits or the pipe breaks, the batch in hand is retried on a restarted
 * command after restart_delay (doubling to 30 s): records are delivered
 * at least once (a consumer killed mid-batch may see a line twice).
 *
 * With command_ack, the consumer writes one line to its standard output
 * for each record it has kept; only then does a record count as written
 * (this is what must-archive to a command waits for).
 *
 * Failure: nothing here can stop the daemon; SIGPIPE is ignored by it and
 * a broken pipe is an EPIPE write error.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "archive.h"

struct cmd {
	pid_t pid;
	int in, out;            /* its stdin (we write), its stdout (acks) */
	struct xm_buf acks;
	unsigned restarts;
};

/* cmd_stop - close the pipes, reap the child */
static void
cmd_stop(struct cmd *c, bool kill_it)
{
	int st;

	if (c->in >= 0)
		close(c->in);
	if (c->out >= 0)
		close(c->out);
	c->in = c->out = -1;
	if (c->pid > 0) {
		int i;

		/* EOF on its input ends a well-behaved consumer; give it 5 s */
		for (i = 0; !kill_it && i < 50; i++) {
			if (waitpid(c->pid, &st, WNOHANG) != 0)
				break;
			usleep(100000);
		}
		if (kill_it || i == 50) {
			kill(c->pid, SIGTERM);
			waitpid(c->pid, &st, 0);
		}
	}
	c->pid = -1;
	xm_buf_reset(&c->acks);
}

/* cmd_open - nothing runs yet: the writer thread starts the command */
static int
cmd_open(struct archive_sink *s, char *err, size_t errlen)
{
	struct cmd *c = xm_calloc(1, sizeof(*c));

	c->pid = -1;
	c->in = c->out = -1;
	s->priv = c;
	return 0;
}

/* cmd_connect - start (or restart) the command */
static int
cmd_connect(struct archive_sink *s, char *err, size_t errlen)
{
	struct cmd *c = s->priv;
	int pin[2], pout[2] = { -1, -1 };
	pid_t pid;

	if (c->pid > 0) {
		int st;

		if (waitpid(c->pid, &st, WNOHANG) == 0)
			return 0;  /* still running */
		c->pid = -1;
	}
	cmd_stop(c, false);
	if (pipe2(pin, O_CLOEXEC) < 0 ||
	    (s->conf->command_ack && pipe2(pout, O_CLOEXEC) < 0)) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(pin[0]);
		close(pin[1]);
		if (pout[0] >= 0) {
			close(pout[0]);
			close(pout[1]);
		}
		return -1;
	}
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		dup2(pin[0], 0);
		if (pout[1] >= 0)
			dup2(pout[1], 1);
		execl("/bin/sh", "sh", "-c", s->conf->command, (char *)NULL);
		_exit(127);
	}
	close(pin[0]);
	if (pout[1] >= 0)
		close(pout[1]);
	c->pid = pid;
	c->in = pin[1];
	c->out = pout[0];
	if (c->restarts++ > 0)
		log_warn("archive %s: command restarted (pid %d)", s->conf->name,
		    (int)pid);
	else
		log_info("archive %s: command started (pid %d)", s->conf->name,
		    (int)pid);
	return 0;
}

/* read_acks - wait until N ack lines have come; -1 when the command died */
static int
read_acks(struct cmd *c, size_t n, size_t *got)
{
	char tmp[4096];

	*got = 0;
	for (;;) {
		char *nl;
		ssize_t r;

		while (*got < n && c->acks.len > 0 &&
		    (nl = memchr(c->acks.data, '\n', c->acks.len)) != NULL) {
			xm_buf_consume(&c->acks, (size_t)(nl - c->acks.data) + 1);
			(*got)++;
		}
		if (*got == n)
			return 0;
		if (c->acks.len > 65536)
			xm_buf_reset(&c->acks);  /* no newline for 64k: junk */
		r = read(c->out, tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		xm_buf_append(&c->acks, tmp, (size_t)r);
	}
}

/* cmd_write - the batch as lines; with acks, one ack per line */
static int
cmd_write(struct archive_sink *s, struct xm_archive_item **items, size_t n,
    bool durable, size_t *done, char *err, size_t errlen)
{
	struct cmd *c = s->priv;
	size_t i;

	*done = 0;
	for (i = 0; i < n; i++) {
		char *json = xm_archive_encode(items[i]);
		size_t len = strlen(json), off = 0;
		int rc = 0;

		json[len] = '\n';  /* the NUL becomes the newline */
		while (off < len + 1) {
			ssize_t w = write(c->in, json + off, len + 1 - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = -1;
				break;
			}
			off += (size_t)w;
		}
		free(json);
		if (rc < 0) {
			snprintf(err, errlen, "the command's input: %s (it exited?)",
			    strerror(errno));
			goto dead;
		}
		if (!s->conf->command_ack)
			*done = i + 1;
	}
	if (s->conf->command_ack) {
		size_t got;

		if (read_acks(c, n, &got) < 0) {
			*done = got;
			snprintf(err, errlen, "the command exited after "
			    "acknowledging %zu of %zu records", got, n);
			goto dead;
		}
		*done = n;
	}
	return 0;
dead:
	cmd_stop(c, true);
	return -1;
}

/* cmd_close - end the command: EOF on its input, then wait for it */
static void
cmd_close(struct archive_sink *s)
{
	struct cmd *c = s->priv;

	if (c == NULL)
		return;
	cmd_stop(c, false);
	xm_buf_free(&c->acks);
	free(c);
	s->priv = NULL;
}

const struct archive_sink_ops xm_archive_cmd_ops = {
	cmd_open, cmd_connect, cmd_write, NULL, NULL, cmd_close,
};
