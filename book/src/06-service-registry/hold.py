#!/usr/bin/env python3
# Memory per waiting query and wake-up: python3 hold.py HOST:PORT N AGENT_PID
import socket, sys, time, json, urllib.request
host, port = sys.argv[1].split(':'); port = int(port); n = int(sys.argv[2]); pid = sys.argv[3]
def rss():
    for l in open(f'/proc/{pid}/status'):
        if l.startswith('VmRSS'): return int(l.split()[1])
for i in range(1000):
    body = json.dumps({"Name": f"svc{i}", "ID": f"i{i}", "Port": 80}).encode()
    urllib.request.urlopen(urllib.request.Request(f'http://{host}:{port}/v1/agent/service/register', data=body, method='PUT')).read()
idx = [int(urllib.request.urlopen(f'http://{host}:{port}/v1/health/service/svc{i}').headers['X-Consul-Index']) for i in range(1000)]
time.sleep(0.5); before = rss()
socks = []
for i in range(n):
    s = socket.create_connection((host, port))
    s.sendall(f"GET /v1/health/service/svc{i%1000}?index={idx[i%1000]}&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    socks.append(s)
time.sleep(2); after = rss()
# wake one name and time it
s0 = socks[0]; s0.settimeout(5)
t = time.time()
body = json.dumps({"Name": "svc0", "ID": "i0", "Port": 81}).encode()
urllib.request.urlopen(urllib.request.Request(f'http://{host}:{port}/v1/agent/service/register', data=body, method='PUT')).read()
data = s0.recv(100); woke = time.time() - t
# check another is still waiting
s1 = socks[1]; s1.settimeout(0.3)
try: s1.recv(100); other = "woken (bad)"
except socket.timeout: other = "still waiting"
print(f"{n} held: RSS {before} KiB -> {after} KiB, {(after-before)*1024/n:.0f} bytes per waiting query; register->answer {woke*1000:.1f} ms (incl. the register round trip); svc1 {other}; first bytes {data[:15]!r}")
