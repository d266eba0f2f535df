"""A stand-in for the Anthropic Messages API: answers every /v1/messages call with one short
streamed (SSE) or plain reply, so Claude Code runs for real against a loopback port."""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_REPLY = "Hello from the stand-in."

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        model = body.get("model", "claude-sonnet-4-5")
        if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
            out = json.dumps({"input_tokens": 10}).encode()
            self.send_response(200); self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out); return
        usage = {"input_tokens": 120, "output_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        message = {"id": "msg_standin", "type": "message", "role": "assistant", "model": model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        if body.get("stream"):
            events = [
                ("message_start", {"type": "message_start", "message": message}),
                ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": MODEL_REPLY}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 8}}),
                ("message_stop", {"type": "message_stop"}),
            ]
            out = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()
            self.send_response(200); self.send_header("content-type", "text/event-stream")
        else:
            message.update(content=[{"type": "text", "text": MODEL_REPLY}], stop_reason="end_turn")
            out = json.dumps(message).encode()
            self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out)

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
