import Foundation
import Hummingbird
import Logging
import RocketKV

/// How `rocketkv serve` runs: the model, the address, the default KV method and the limits.
public struct ServerConfiguration: Sendable {
    /// A catalog model name or a GGUF path (nil: the default model).
    public var model: String?
    public var host = "127.0.0.1"
    public var port = 8080
    /// The KV method of requests that do not choose one (`kv` field).
    public var kv = KVConfiguration()
    /// Sequences decoded together.
    public var parallel = 4
    /// Requests waiting for a slot before further ones are refused (429).
    public var queueLimit = 64
    /// KV memory kept for idle conversations.
    public var cacheBytes = 1 << 30
    /// Required as `Authorization: Bearer KEY` on `/v1/` endpoints when set.
    public var apiKey: String?
    public var threads = ProcessInfo.processInfo.activeProcessorCount
    /// Larger request bodies are refused (413).
    public var maxBodyBytes = 1 << 20

    public init() {}
}

/// The model being served, once loaded.
struct ServedModel: Sendable {
    let scheduler: BatchScheduler
    /// What requests are checked against.
    let target: RequestTarget
    var id: String { target.modelID }
    var model: LanguageModel { scheduler.engine.model }
    var tokenizer: Tokenizer { scheduler.tokenizer }
}

/// An OpenAI-compatible HTTP server over a `BatchScheduler`: `/v1/chat/completions`, `/v1/completions`,
/// `/v1/models`, `/health`, `/metrics` and a chat page at `/`. It listens at once and loads the model in the
/// background (`/health` answers 503 until it is ready).
public final class OpenAIServer: Sendable {
    public let configuration: ServerConfiguration
    let metrics = ServerMetrics()
    private let loaded = Locked<ServedModel?>(nil)
    private let log: @Sendable (String) -> Void

    public init(configuration: ServerConfiguration, log: @escaping @Sendable (String) -> Void) {
        self.configuration = configuration
        self.log = log
    }

    /// Serves until the process is interrupted (SIGINT/SIGTERM) or the model fails to load (rethrown).
    public func run() async throws {
        let c = configuration
        let app = Application(router: router(), configuration: .init(address: .hostname(c.host, port: c.port), serverName: "rocketkv"),
                              onServerRunning: { [log] channel in log("listening on http://\(c.host):\(channel.localAddress?.port ?? c.port)") },
                              logger: Logger(label: "rocketkv-serve", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            group.addTask { try self.load() }
            // The loader returns when the model is ready; the server returns on a signal. A thrown error ends both.
            try await group.next()
            try await group.next()
        }
        loaded.value?.scheduler.shutdown()
    }

    /// Opens the model (fetching a catalog model on first use) and starts the scheduler.
    private func load() throws {
        let c = configuration
        let path = try ModelStore.resolve(c.model, log: log)
        let file = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: file)
        let engine = try Engine(file: file, threads: c.threads)
        try c.kv.validate(for: engine.model)
        let id = c.model.map { ModelStore.catalogModel(named: $0) == nil ? URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent : $0 }
            ?? ModelStore.defaultModel.name
        let scheduler = BatchScheduler(engine: engine, tokenizer: tokenizer, parallel: c.parallel, queueLimit: c.queueLimit, cacheBytes: c.cacheBytes)
        let target = RequestTarget(modelID: id, tokenizer: tokenizer, chat: try? ChatPrompt(file: file, tokenizer: tokenizer),
                                   contextLength: engine.model.config.contextLength, defaultKV: c.kv)
        loaded.value = ServedModel(scheduler: scheduler, target: target)
        let cfg = engine.model.config
        log("model \(id) ready: \(cfg.architecture), \(cfg.layers) layers, context \(cfg.contextLength); kv \(c.kv); parallel \(c.parallel)")
    }

    // MARK: Routes

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: chatPageHTML)))
        }
        router.get("/health") { _, _ in
            try self.answer("health") {
                guard self.loaded.value != nil else { throw APIError(.serviceUnavailable, "the model is loading", type: "unavailable_error", code: "model_loading") }
                return jsonResponse(["status": .string("ok")])
            }
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.exposition(status: self.loaded.value?.scheduler.status))))
        }
        router.get("/v1/models") { request, _ in
            try self.answer("models") {
                let served = try self.ready(request)
                let c = served.model.config
                return jsonResponse(["object": "list", "data": .array([.object([
                    "id": .string(served.id), "object": "model", "created": .int(0), "owned_by": "rocketkv",
                    "rocketkv": .object(["architecture": .string(c.architecture), "context_length": .int(c.contextLength),
                                         "kv_methods": .array(KVMethods.all.map { .string($0.name) }),
                                         "default_kv": kvJSON(self.configuration.kv)]),
                ])])])
            }
        }
        router.post("/v1/chat/completions") { request, _ in try await self.complete(request, chat: true) }
        router.post("/v1/completions") { request, _ in try await self.complete(request, chat: false) }
        return router
    }

    /// Runs a handler, turning any error into an OpenAI-shaped response, and counts the answer.
    private func answer(_ endpoint: String, _ body: () async throws -> Response) async -> Response {
        let response: Response
        do { response = try await body() } catch { response = Self.apiError(error).jsonResponse }
        metrics.request(endpoint: endpoint, status: response.status.code)
        return response
    }

    private func answer(_ endpoint: String, _ body: () throws -> Response) throws -> Response {
        let response: Response
        do { response = try body() } catch { response = Self.apiError(error).jsonResponse }
        metrics.request(endpoint: endpoint, status: response.status.code)
        return response
    }

    static func apiError(_ error: Error) -> APIError {
        switch error {
        case let error as APIError: return error
        case let error as SchedulerError where error == .queueFull: return APIError(.tooManyRequests, error.description, type: "rate_limit_error", code: "queue_full")
        case let error as SchedulerError: return APIError.badRequest(error.description, param: "messages", code: "context_length_exceeded")
        case let error as KVMethodError: return APIError.badRequest(error.description, param: "kv", code: "invalid_kv")
        case let error as ChatTemplateError: return APIError.badRequest(error.description, param: "messages")
        case let error as HTTPResponseError where error.status == .contentTooLarge:
            return APIError(.contentTooLarge, "the request body is too large", code: "request_too_large")
        default: return APIError(.internalServerError, "\(error)", type: "server_error")
        }
    }

    /// The served model, once the request's API key is checked.
    private func ready(_ request: Request) throws -> ServedModel {
        if let key = configuration.apiKey, request.headers[.authorization] != "Bearer \(key)" {
            throw APIError(.unauthorized, "invalid or missing API key", code: "invalid_api_key")
        }
        guard let served = loaded.value else { throw APIError(.serviceUnavailable, "the model is loading", type: "unavailable_error", code: "model_loading") }
        return served
    }

    private func complete(_ request: Request, chat: Bool) async throws -> Response {
        var response = await answer(chat ? "chat_completions" : "completions") {
            let served = try ready(request)
            // A whole reply is written only at the end, so nothing else would notice a client that went away: the
            // connection is watched while the request runs, and its closing cancels the generation and frees the
            // sequence. (A streamed reply also notices when a write fails.) Watching consumes the connection, so
            // every reply says `Connection: close` and clients do not reuse it.
            return try await request.body.consumeWithCancellationOnInboundClose { body in
                let bytes = try await body.collect(upTo: configuration.maxBodyBytes)
                let prepared = try PreparedRequest(body: Data(buffer: bytes), chat: chat, for: served.target)
                let stream = try served.scheduler.generate(prompt: prepared.prompt, options: prepared.options, kv: prepared.kv)
                let reply = ReplyFormat(chat: chat, model: served.id, kv: prepared.kv)
                if prepared.stream {
                    return reply.eventStream(stream, includeUsage: prepared.includeUsage, metrics: metrics)
                }
                var text = ""
                for try await event in stream {
                    switch event {
                    case .started: break
                    case .text(let piece): text += piece
                    case .finished(let report):
                        metrics.generation(report)
                        return jsonResponse(reply.completion(text: text, report: report))
                    }
                }
                try Task.checkCancellation()
                throw APIError(.internalServerError, "the generation ended without a result", type: "server_error")
            }
        }
        response.headers[.connection] = "close"
        return response
    }
}

func kvJSON(_ kv: KVConfiguration) -> JSONValue {
    .object(["method": .string(kv.method), "budget": kv.budget.map(JSONValue.int) ?? .null,
             "options": .object(kv.options.mapValues(JSONValue.string)), "kv_type": .string(kv.kvType.description)])
}

extension JSONValue: ExpressibleByStringLiteral {
    init(stringLiteral value: String) { self = .string(value) }
}

/// A value shared across tasks behind a lock.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
