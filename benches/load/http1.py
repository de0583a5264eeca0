"""A minimal blocking HTTP/1.1 client for the load benchmark's helpers.

It keeps connections alive (http.client would too, but here we also need to hold a thousand
sockets open and see exactly the bytes the server sent, de-chunked, never decompressed).
"""
import socket


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Conn:
    def __init__(self, addr):
        self.addr = addr
        self.sock = connect(addr)
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _take_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def get(self, path):
        """GET path on the kept-alive connection; returns (status, headers dict, body)."""
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: smproxy-bench\r\n\r\n".encode()
        )
        status = int(self._take_line().split()[1])
        headers = {}
        while True:
            line = self._take_line()
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._take_line().split(b";")[0], 16)
                if size == 0:
                    while self._take_line():  # trailers, then the empty line
                        pass
                    break
                body += self._take(size)
                self._take(2)
        else:
            body = self._take(int(headers.get("content-length", "0")))
        return status, headers, body
