#!/usr/bin/env python3
# Load for the chapter's table: python3 load.py HOST:PORT register|pass|flip|health PER_THREAD
import http.client, json, sys, threading, time
host, port = sys.argv[1].split(':'); port = int(port)
kind = sys.argv[2]; n_threads = 4; per = int(sys.argv[3])
def worker(t, out):
    c = http.client.HTTPConnection(host, port)
    start = time.time()
    for i in range(per):
        if kind == 'register':
            body = json.dumps({"Name": f"svc{i%50}", "ID": f"t{t}-{i}", "Port": 80, "Check": {"TTL": "60s"}})
            c.request('PUT', '/v1/agent/service/register', body)
        elif kind == 'pass':
            c.request('PUT', f'/v1/agent/check/pass/service:t{t}-{i}')
        elif kind == 'flip':
            c.request('PUT', f'/v1/agent/check/{"warn" if i%2 else "pass"}/service:t{t}-{i}')
        else:
            c.request('GET', f'/v1/health/service/svc{i%50}?passing')
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
    out.append(time.time() - start)
out = []
ts = [threading.Thread(target=worker, args=(t, out)) for t in range(n_threads)]
s = time.time(); [t.start() for t in ts]; [t.join() for t in ts]
el = time.time() - s
print(f"{kind}: {n_threads*per/el:.0f}/s over {n_threads*per} requests")
