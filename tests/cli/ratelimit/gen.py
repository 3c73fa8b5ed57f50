#!/usr/bin/env python3
"""gen.py - timed event sequences for the ratelimit CLI tests

usage: gen.py SCENARIO > FILE
       gen.py summary < CHECK-OUTPUT    (one line per verdict: id, sender,
                                         action, symbols)

Scenarios (each prints events in time order, the clock in time=):
  spammer      a 2-hour-old account sends one line to 100 strangers, one
               every 2 s; in between, a busy user chats with one contact
               (roster=both) every 3 s for the whole time
  campaign     36 throw-away senders (rotating accounts, addresses and
               domains, c2s and s2s) each send one copy of a spam text,
               with small variations (numbers, random tokens, case,
               punctuation), to 3 strangers each; interleaved, a team of
               15 all answer "ok" (and "thanks!", "+1") to one person
  worm         one account sends a lure with a link (query varies) to 30
               contacts in its roster
Deterministic: no randomness, fixed start time.
"""
import sys

T0 = 1795000000.0  # 2026-11-18T...Z


def iso(t):
    import datetime
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (int(round((t % 1) * 1000)) % 1000)


def esc(s):
    return s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def event(t, env, frm, to, body, mid):
    lines = []
    for k, v in env:
        lines.append('%s=%s' % (k, v))
    lines.append('time=%s' % iso(t))
    lines.append('')
    lines.append("<message from='%s' to='%s' type='chat' id='%s'><body>%s</body></message>"
                 % (frm, to, mid, esc(body)))
    return '\n'.join(lines) + '\n\n'


def spammer():
    out = []
    for i in range(100):
        t = T0 + 2 * i
        out.append((t, event(t, [('origin', 'c2s'), ('ip', '198.51.100.66'),
                                 ('auth', 'fresh42@example.org'), ('roster', 'none'),
                                 ('account-age', '7200')],
                             'fresh42@example.org/bot', 'user%03d@example.org' % i,
                             'hi there, add me back', 's%03d' % i)))
    for i in range(167):
        t = T0 + 1.2 * i + 0.5
        out.append((t, event(t, [('origin', 'c2s'), ('ip', '203.0.113.10'),
                                 ('auth', 'busy@example.org'), ('roster', 'both'),
                                 ('account-age', '90000000')],
                             'busy@example.org/pc', 'friend@example.org',
                             'message number %d in our long chat' % i, 'b%03d' % i)))
    out.sort(key=lambda e: e[0])
    return ''.join(e for _, e in out)


def campaign():
    out = []
    variants = [
        'Congratulations! You WON a free iPhone {n}, claim it at the link: code {tok}',
        'congratulations you won a FREE iphone {n} - claim it at the link, code {tok}!!',
        'CONGRATULATIONS!!! you won a free iPhone {n}... claim it at the link. code: {tok}',
    ]
    toks = ['x7k9p2', 'q3z8w1', 'm4n5b6v', 'zz91kq', 'a1b2c3d4']
    k = 0
    for s in range(36):
        t = T0 + 20 * s
        dom = 'spam%d.example' % (s % 9)
        if s % 2 == 0:
            env = [('origin', 'c2s'), ('ip', '192.0.2.%d' % (10 + s)),
                   ('auth', 'promo%d@example.org' % s)]
            frm = 'promo%d@example.org/x' % s
        else:
            env = [('origin', 's2s'), ('peer', dom), ('ip', '203.0.113.%d' % (100 + s))]
            frm = 'deal%d@%s/x' % (s, dom)
        for r in range(3):
            body = variants[(s + r) % 3].format(n=11 + (s % 5), tok=toks[(s + r) % 5])
            body += ' http://win-%d.example/claim?u=%d' % (s % 4, s * 10 + r)
            tt = t + r
            out.append((tt, event(tt, env + [('roster', 'none')], frm,
                                  'victim%03d@example.org' % k, body, 'c%02d-%d' % (s, r))))
            k += 1
    team = ['ok', 'Ok', 'ok!', 'thanks!', '+1', 'OK']
    for m in range(15):
        t = T0 + 30 * m + 5
        out.append((t, event(t, [('origin', 'c2s'), ('ip', '198.51.100.%d' % (20 + m)),
                                 ('auth', 'member%d@example.org' % m), ('roster', 'both')],
                             'member%d@example.org/pc' % m, 'boss@example.org',
                             team[m % len(team)], 'ok%02d' % m)))
    out.sort(key=lambda e: e[0])
    return ''.join(e for _, e in out)


def worm():
    out = []
    for i in range(30):
        t = T0 + 1.5 * i
        out.append(event(t, [('origin', 'c2s'), ('ip', '198.51.100.9'),
                             ('auth', 'victim@example.org'), ('roster', 'both')],
                         'victim@example.org/pc', 'contact%02d@example.org' % i,
                         'lol is this you? http://203.0.113.66:8081/photo.php?id=contact%02d' % i,
                         'w%02d' % i))
    return ''.join(out)


def summary():
    import json
    for line in sys.stdin:
        o = json.loads(line)
        syms = ','.join(s['name'] for s in o['symbols']) or '-'
        sys.stdout.write('%s %s %s %s\n' % (o.get('id', '-'),
                         o.get('from', '-').split('/')[0], o['action'], syms))
    return ''


if __name__ == '__main__':
    if len(sys.argv) != 2 or sys.argv[1] not in ('spammer', 'campaign', 'worm',
                                                  'summary'):
        sys.stderr.write(__doc__)
        sys.exit(2)
    sys.stdout.write(globals()[sys.argv[1]]())
