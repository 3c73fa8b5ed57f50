#!/usr/bin/env python3
"""eml-check.py DIR TOKEN SENDER RECIPIENT - read every .eml in DIR with
Python's email package (the way mail and e-discovery tools would) and check
that one message carries TOKEN in its text part, with the sender and
recipient as From/To, a parseable Date, a Message-ID, the verdict headers
and the archived event attached. Prints what it found; exit 0 when all
files parse and the TOKEN message is complete."""
import email
import email.policy
import email.utils
import glob
import os
import sys


def main(d, token, sender, recipient):
    files = sorted(glob.glob(os.path.join(d, "*.eml")))
    if not files:
        print("no .eml files in", d)
        return 1
    hit = None
    for p in files:
        with open(p, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        if msg.defects:
            print(p, "defects:", msg.defects)
            return 1
        for h in ("From", "To", "Date", "Subject", "Message-ID", "X-Xmilter-Action"):
            if msg[h] is None:
                print(p, "lacks", h)
                return 1
        email.utils.parsedate_to_datetime(msg["Date"])  # raises if bad
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        if token in text:
            hit = (p, msg, text)
    if hit is None:
        print("no message with", token, "among", len(files), "files")
        return 1
    p, msg, text = hit
    atts = [a for a in msg.iter_attachments()]
    ok = (sender in str(msg["From"]) and recipient in str(msg["To"])
          and msg["X-XMPP-Kind"] == "message"
          and len(atts) == 1 and token in atts[0].get_content()
          and "<message" in atts[0].get_content())
    print("%s: from=%s to=%s date=%s action=%s body=%r attachment=%d bytes ok=%s"
          % (os.path.basename(p), msg["From"], msg["To"], msg["Date"],
             msg["X-Xmilter-Action"], text.strip(), len(atts[0].get_content()) if atts else 0, ok))
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
