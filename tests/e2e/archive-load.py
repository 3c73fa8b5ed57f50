#!/usr/bin/env python3
"""archive-load.py - drive xmilterd over protocol v1 and check the archive

  archive-load.py send SOCKET N ACKFILE TOKEN [WINDOW]
      Send N FILTER requests (chat messages whose bodies are TOKEN-<i>),
      pipelined up to WINDOW (default 64). Every verdict received is
      appended to ACKFILE ("TOKEN-<i> ACTION") and flushed at once, so the
      file lists every acknowledged request even when the daemon is killed
      mid-run. Exits 0 whether or not the daemon went away; prints
      "sent=S acked=A".

  archive-load.py check ACKFILE [--jsonl DIR] [--sqlite FILE]
      Every acknowledged TOKEN-<i> must be in each archive given. Prints
      "acked=A jsonl=J sqlite=Q missing=M" and exits 1 when M > 0.
"""
import glob
import json
import os
import socket
import sqlite3
import sys


def frame(verb, fid, body):
    b = body.encode()
    return b"%s %d %d\n" % (verb.encode(), fid, len(b)) + b


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def frame(self):
        """the next (verb, id, body) or None at EOF"""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                verb, fid, n = self.buf[:nl].split(b" ")
                n = int(n)
                if len(self.buf) >= nl + 1 + n:
                    body = self.buf[nl + 1:nl + 1 + n]
                    self.buf = self.buf[nl + 1 + n:]
                    return verb.decode(), int(fid), body.decode("utf-8", "replace")
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += chunk


def send(path, n, ackfile, token, window=64):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(frame("HELLO", 0, "version=1\nserver=archive-load\nmax-inflight=%d\n" % window))
    r = Reader(s)
    f = r.frame()
    if f is None or f[0] != "HELLO":
        print("no HELLO from the daemon", file=sys.stderr)
        return 1
    out = open(ackfile, "a")
    sent = acked = 0
    inflight = 0
    alive = True
    while alive and (sent < n or inflight > 0):
        batch = b""
        while sent < n and inflight < window:
            sent += 1
            inflight += 1
            ev = ("origin=c2s\nauth=load@a.example\n\n<message from='load@a.example/r' "
                  "to='sink@a.example' type='chat' id='m%d'><body>%s-%d</body></message>"
                  % (sent, token, sent))
            batch += frame("FILTER", sent, ev)
        if batch:
            try:
                s.sendall(batch)
            except OSError:
                alive = False
                break
        f = r.frame()
        if f is None:
            break
        verb, fid, body = f
        if verb == "VERDICT":
            action = "?"
            for line in body.split("\n"):
                if line.startswith("action="):
                    action = line[7:]
            out.write("%s-%d %s\n" % (token, fid, action))
            out.flush()
            acked += 1
            inflight -= 1
        elif verb == "BYE":
            break
    out.close()
    print("sent=%d acked=%d" % (sent, acked))
    return 0


def check(ackfile, jsonl=None, db=None):
    acked = set(l.split()[0] for l in open(ackfile) if l.strip())
    missing = 0
    found_j = found_q = 0
    if jsonl:
        bodies = set()
        for p in sorted(glob.glob(os.path.join(jsonl, "*.jsonl"))):
            for line in open(p, encoding="utf-8"):
                if not line.endswith("\n"):
                    continue  # a cut-short last line: never acknowledged
                rec = json.loads(line)
                if "body" in rec:
                    bodies.add(rec["body"])
        found_j = len(acked & bodies)
        missing += len(acked - bodies)
    if db:
        con = sqlite3.connect(db)
        bodies = set(r[0] for r in con.execute("SELECT body FROM records"))
        found_q = len(acked & bodies)
        missing += len(acked - bodies)
    print("acked=%d jsonl=%d sqlite=%d missing=%d" % (len(acked), found_j, found_q, missing))
    return 1 if missing or not acked else 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "send":
        return send(argv[2], int(argv[3]), argv[4], argv[5],
                    int(argv[6]) if len(argv) > 6 else 64)
    if len(argv) >= 3 and argv[1] == "check":
        jsonl = db = None
        i = 3
        while i + 1 < len(argv):
            if argv[i] == "--jsonl":
                jsonl = argv[i + 1]
            elif argv[i] == "--sqlite":
                db = argv[i + 1]
            i += 2
        return check(argv[2], jsonl, db)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
