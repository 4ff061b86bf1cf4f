#!/usr/bin/env python3
"""Screenshots the chat page of `rocketkv serve` in headless Chromium after a real conversation: starts a
server, opens `/#ask=Q1|Q2` (the page asks the questions in turn), waits until every reply shows its figures,
and saves a PNG through the DevTools protocol.

    python scripts/screenshot_chat_page.py [--out docs/chat-page.png]   (needs `chromium` and websocket-client)
"""
import argparse
import base64
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import websocket

QUESTIONS = ["What is a rocket?", "How does it reach orbit?"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return urllib.request.urlopen(url).read()
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="docs/chat-page.png")
    p.add_argument("--kv", default="rocket")
    p.add_argument("--budget", default="256")
    args = p.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    port, debug = free_port(), free_port()
    server = subprocess.Popen([os.path.join(root, ".build/release/rocketkv"), "serve", "--port", str(port), "--kv", args.kv,
                               "--budget", args.budget], stderr=subprocess.DEVNULL)
    profile = tempfile.mkdtemp()
    browser = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                f"--remote-debugging-port={debug}", f"--user-data-dir={profile}", "--window-size=1000,1000",
                                "about:blank"], stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/health")
        targets = json.loads(wait_for(f"http://127.0.0.1:{debug}/json"))
        page = next(t for t in targets if t["type"] == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=120)
        ids = iter(range(1, 10**6))

        def call(method, **params):
            n = next(ids)
            ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv())
                if message.get("id") == n:
                    return message.get("result", {})

        ask = "|".join(urllib.parse.quote(q) for q in QUESTIONS)
        call("Page.navigate", url=f"http://127.0.0.1:{port}/#ask={ask}")
        deadline = time.time() + 300
        while time.time() < deadline:
            done = call("Runtime.evaluate", expression="document.querySelectorAll('.figures').length")["result"].get("value", 0)
            if done >= len(QUESTIONS):
                break
            time.sleep(0.5)
        shot = call("Page.captureScreenshot", format="png")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print("wrote", args.out)
    finally:
        browser.terminate()
        server.terminate()
        browser.wait(30)
        server.wait(30)


if __name__ == "__main__":
    main()
