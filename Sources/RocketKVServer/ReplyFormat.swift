import Foundation
import Hummingbird
import RocketKV

/// The JSON of one reply in OpenAI's shapes: a chat completion or a text completion, whole or as
/// server-sent-event chunks, with `usage` and a `kv` extension (method, bytes stored, bytes read per token, speed).
struct ReplyFormat: Sendable {
    let chat: Bool
    let model: String
    let kv: KVConfiguration
    let id: String
    let created: Int

    init(chat: Bool, model: String, kv: KVConfiguration) {
        self.chat = chat
        self.model = model
        self.kv = kv
        id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        created = Int(Date().timeIntervalSince1970)
    }

    private func envelope(_ choices: [JSONValue], chunk: Bool) -> [String: JSONValue] {
        let object = chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"
        return ["id": .string(id), "object": .string(object), "created": .int(created), "model": .string(model), "choices": .array(choices)]
    }

    static func finishReason(_ reason: StopReason) -> String {
        switch reason {
        case .endOfGeneration, .stopString: return "stop"
        case .maxTokens, .contextFull: return "length"
        }
    }

    func usage(_ report: GenerationReport) -> JSONValue {
        let prompt = report.result.promptTokens + report.cachedTokens, completion = report.result.tokens.count
        return .object(["prompt_tokens": .int(prompt), "completion_tokens": .int(completion), "total_tokens": .int(prompt + completion),
                        "prompt_tokens_details": .object(["cached_tokens": .int(report.cachedTokens)])])
    }

    /// What the KV method did for this reply (a RocketKV extension).
    func kvFigures(_ report: GenerationReport) -> JSONValue {
        guard case .object(var fields) = kvJSON(kv) else { return .null }
        fields["stored_tokens"] = .int(report.kv.storedTokens)
        fields["stored_bytes"] = .int(report.kv.storedBytes)
        fields["read_bytes_per_token"] = .double(report.kvBytesReadPerToken.rounded())
        fields["decode_tokens_per_second"] = .double(report.result.decodeTokensPerSecond)
        fields["prefill_seconds"] = .double(report.result.prefillSeconds)
        fields["plan"] = report.plan.map(JSONValue.string) ?? .null
        return .object(fields)
    }

    /// The whole reply.
    func completion(text: String, report: GenerationReport) -> [String: JSONValue] {
        let finish = JSONValue.string(Self.finishReason(report.result.stopReason))
        let choice: JSONValue = chat
            ? .object(["index": .int(0), "message": .object(["role": "assistant", "content": .string(text)]), "finish_reason": finish])
            : .object(["index": .int(0), "text": .string(text), "logprobs": .null, "finish_reason": finish])
        var body = envelope([choice], chunk: false)
        body["usage"] = usage(report)
        body["kv"] = kvFigures(report)
        return body
    }

    /// One streamed chunk: new text (and for chat the role, in the first), or the finish reason.
    func chunk(text: String?, role: Bool = false, finish: StopReason? = nil) -> [String: JSONValue] {
        var fields: [String: JSONValue] = ["index": .int(0), "finish_reason": finish.map { .string(Self.finishReason($0)) } ?? .null]
        if chat {
            var delta: [String: JSONValue] = [:]
            if role { delta["role"] = "assistant" }
            if let text { delta["content"] = .string(text) }
            fields["delta"] = .object(delta)
        } else {
            fields["text"] = .string(text ?? "")
            fields["logprobs"] = .null
        }
        return envelope([.object(fields)], chunk: true)
    }

    /// The reply as server-sent events: `data: {json}\n\n` chunks, then `data: [DONE]`. When the client goes
    /// away, the next write fails, the stream is dropped and the scheduler cancels the sequence.
    func eventStream(_ stream: AsyncThrowingStream<GenerationEvent, Error>, includeUsage: Bool, metrics: ServerMetrics) -> Response {
        let body = ResponseBody { writer in
            func send(_ object: [String: JSONValue]) async throws {
                var buffer = ByteBuffer(string: "data: ")
                buffer.writeBytes(JSONValue.object(object).data)
                buffer.writeString("\n\n")
                try await writer.write(buffer)
            }
            do {
                for try await event in stream {
                    switch event {
                    case .started: if chat { try await send(chunk(text: "", role: true)) }
                    case .text(let piece): try await send(chunk(text: piece))
                    case .finished(let report):
                        metrics.generation(report)
                        var last = chunk(text: nil, finish: report.result.stopReason)
                        last["kv"] = kvFigures(report)
                        try await send(last)
                        if includeUsage {
                            var usageChunk = envelope([], chunk: true)
                            usageChunk["usage"] = usage(report)
                            try await send(usageChunk)
                        }
                    }
                }
            } catch let error as SchedulerError {
                try await send(APIError(.serviceUnavailable, error.description, type: "server_error").body)
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}
