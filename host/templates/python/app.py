# {{name}}: forwards each message to config `output_topic` (default `output`) and answers each
# HTTP request with its body. Build with `bash build.sh`, test with
# `eventhost test {{name}}.wasm cases.toml`.

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, outbox, types


class MessageHandler(exports.MessageHandler):
    def handle(self, delivery):
        message = delivery.message
        if not message.value:
            raise Err(types.Failure_Invalid("empty message"))
        topic = config.get("output_topic") or "output"
        try:
            outbox.send(types.Message(topic=topic, key=message.key, value=message.value, headers=[]))
        except Err as refused:
            raise Err(types.Failure_Retry(str(refused.value))) from None


class HttpHandler(exports.HttpHandler):
    def handle(self, request):
        return types.HttpResponse(
            status=200, headers=[("content-type", "text/plain")], body=request.body
        )
