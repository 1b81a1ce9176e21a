#!/usr/bin/env python3
"""bench/smtp_sink.py: an SMTP sink for bench/jobs.sh. Accepts every message
and writes one line per message to OUT: "<store> <job> <unix time of arrival>",
from shopd's Message-ID <job-<store>-<job>@host>, so the bench can join each
arrival with its outbox row in PostgreSQL (the same machine's clock).

    python3 bench/smtp_sink.py PORT OUT
"""
import re
import socket
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
import asyncore  # noqa: E402  (Python 3.11: smtpd and asyncore are still there)
import smtpd  # noqa: E402

MSGID = re.compile(rb"^Message-ID: <job-(\d+)-(\d+)@", re.M | re.I)


class Sink(smtpd.SMTPServer):
    def __init__(self, port, out):
        super().__init__(("127.0.0.1", port), None, decode_data=False)
        self.out = open(out, "a", buffering=1)

    def handle_accepted(self, conn, addr):
        # Without TCP_NODELAY each reply waits on the client's delayed ACK
        # (about 40 ms a step: 85 ms a message, measured).
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle_accepted(conn, addr)

    def process_message(self, peer, mailfrom, rcpttos, data, **kw):
        m = MSGID.search(data)
        if m:
            self.out.write("%s %s %.6f\n" % (m.group(1).decode(), m.group(2).decode(), time.time()))
        return None  # 250


if __name__ == "__main__":
    Sink(int(sys.argv[1]), sys.argv[2])
    asyncore.loop(timeout=1)
