// {{name}}: forwards each message to config `output_topic` (default `output`) and answers each
// HTTP request with its body. Build with `bash build.sh`, test with
// `eventhost test {{name}}.wasm cases.toml`.

import { get as configGet } from 'eventhost:plugin/config@0.1.0';
import { send } from 'eventhost:plugin/outbox@0.1.0';

export const messageHandler = {
    handle(delivery) {
        const { key, value } = delivery.message;
        if (value.length === 0) throw { tag: 'invalid', val: 'empty message' };
        const topic = configGet('output_topic') ?? 'output';
        try {
            send({ topic, key, value, headers: [] });
        } catch (e) {
            throw { tag: 'retry', val: String(e.payload ?? e) };
        }
    },
};

export const httpHandler = {
    handle(request) {
        return { status: 200, headers: [['content-type', 'text/plain']], body: request.body };
    },
};
