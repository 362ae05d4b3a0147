"""Serves the model that ddp.py trained, over HTTP on :8080.

The model file (rank 0's model.pt: a torch.nn.Linear state_dict) comes from
argv[1], else $MODEL, else /inputs/model/rank-0/model.pt. The model is
loaded before the port opens, so GET /healthz answering 200 "ok" means it
is loaded. POST /predict {"x": [..]} answers {"y": [..]}: one prediction
per sample (a number for a one-input model, else a list of in_features).
Anything else is 404. The container needs no network and no writable root.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


def load(path):
    state = torch.load(path, map_location="cpu")
    out_features, in_features = state["weight"].shape
    model = torch.nn.Linear(in_features, out_features)
    model.load_state_dict(state)
    model.eval()
    return model


class Handler(BaseHTTPRequestHandler):
    model = None

    def reply(self, code, body, kind="application/json"):
        b = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, "ok", "text/plain")
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/predict":
            return self.reply(404, {"error": "not found"})
        try:
            n = int(self.headers.get("Content-Length", "0"))
            x = torch.tensor(json.loads(self.rfile.read(n))["x"], dtype=torch.float32)
            x = x.reshape(-1, self.model.in_features)
        except Exception as e:  # bad JSON, no "x", wrong shape
            return self.reply(400, {"error": str(e)})
        with torch.no_grad():
            y = self.model(x)
        if self.model.out_features == 1:
            y = y.flatten()
        self.reply(200, {"y": y.tolist()})


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MODEL", "/inputs/model/rank-0/model.pt")
    torch.set_num_threads(1)
    Handler.model = load(path)
    w = [round(v, 6) for v in torch.cat([p.detach().flatten() for p in Handler.model.parameters()]).tolist()]
    sys.stdout.write(f"serving {path} (parameters {w}) on :8080\n")
    sys.stdout.flush()
    ThreadingHTTPServer(("", 8080), Handler).serve_forever()


if __name__ == "__main__":
    main()
