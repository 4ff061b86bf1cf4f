import Foundation
import RocketKV

/// The fields of OpenAI's chat and completion requests that the server reads (others are ignored), plus the
/// `kv` extension: `{"method": "rocket", "budget": 256, "options": {"split": "efficiency"}}`.
struct CompletionRequest: Decodable {
    struct Message: Decodable {
        let role: String
        let content: String

        private enum CodingKeys: String, CodingKey { case role, content }
        private struct Part: Decodable { let type: String; let text: String? }

        /// `content` is a string, null, or a list of parts of which the text ones are joined.
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            role = try c.decode(String.self, forKey: .role)
            if try c.decodeNil(forKey: .content) {
                content = ""
            } else if let text = try? c.decode(String.self, forKey: .content) {
                content = text
            } else {
                content = try c.decode([Part].self, forKey: .content).compactMap(\.text).joined()
            }
        }
    }

    struct StreamOptions: Decodable { let includeUsage: Bool? }

    struct KV: Decodable {
        let method: String?
        let budget: Int?
        let options: [String: Scalar]?
    }

    /// A string or a number (option values and stop lists are accepted in either form).
    struct Scalar: Decodable {
        let text: String
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { text = s } else if let i = try? c.decode(Int.self) { text = String(i) } else { text = String(try c.decode(Double.self)) }
        }
    }

    /// `stop`: a string or a list of strings.
    struct Stop: Decodable {
        let strings: [String]
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let one = try? c.decode(String.self) { strings = [one] } else { strings = try c.decode([String].self) }
        }
    }

    /// `prompt` of /v1/completions: a string or a list of one string.
    struct Prompt: Decodable {
        let text: String
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { text = s; return }
            let list = try c.decode([String].self)
            guard list.count == 1 else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "only one prompt per request is supported")
            }
            text = list[0]
        }
    }

    let model: String?
    let messages: [Message]?
    let prompt: Prompt?
    let maxTokens: Int?
    let maxCompletionTokens: Int?
    let temperature: Double?
    let topP: Double?
    let topK: Int?
    let minP: Double?
    let seed: Int64?
    let stop: Stop?
    let stream: Bool?
    let streamOptions: StreamOptions?
    let n: Int?
    /// llama-server's extension: keep generating past end-of-generation tokens (for benchmarks).
    let ignoreEos: Bool?
    let kv: KV?

    /// Parses a request body; every failure is a 400 in OpenAI's shape naming the field.
    static func parse(_ data: Data) throws -> CompletionRequest {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(CompletionRequest.self, from: data)
        } catch let error as DecodingError {
            throw APIError.badRequest(describe(error).message, param: describe(error).param)
        } catch {
            throw APIError.badRequest("the request body is not valid JSON")
        }
    }

    private static func describe(_ error: DecodingError) -> (message: String, param: String?) {
        func path(_ keys: [CodingKey]) -> String? {
            let parts = keys.map { $0.intValue.map { "[\($0)]" } ?? ".\(snakeCase($0.stringValue))" }
            return parts.isEmpty ? nil : String(parts.joined().drop { $0 == "." })
        }
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            let param = path(context.codingPath)
            if param == nil { return ("the request body must be a JSON object", nil) }
            return ("'\(param!)' has the wrong type: \(context.debugDescription)", param)
        case .keyNotFound(let key, let context):
            let param = path(context.codingPath + [key])
            return ("'\(param ?? key.stringValue)' is required", param)
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return ("the request body is not valid JSON", nil) }
            let param = path(context.codingPath)
            return ("'\(param ?? "")' is invalid: \(context.debugDescription)", param)
        @unknown default:
            return ("the request body is invalid", nil)
        }
    }

    /// `maxTokens` → `max_tokens`, as the client wrote it.
    private static func snakeCase(_ key: String) -> String {
        key.reduce(into: "") { out, ch in
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
    }

    /// The generation options, validated, with `max_tokens` clamped to the room left in the context.
    func generationOptions(room: Int) throws -> GenerationOptions {
        if let n, n != 1 { throw APIError.badRequest("only n = 1 is supported", param: "n") }
        var options = GenerationOptions()
        let requested = maxCompletionTokens ?? maxTokens
        if let requested, requested < 0 { throw APIError.badRequest("'max_tokens' must be ≥ 0", param: "max_tokens") }
        options.maxTokens = min(requested ?? room, room)
        var sampling = SamplingParameters(temperature: 0.8)   // llama-server's defaults for fields left out
        if let temperature {
            guard (0...2).contains(temperature) else { throw APIError.badRequest("'temperature' must be between 0 and 2", param: "temperature") }
            sampling.temperature = Float(temperature)
        }
        if let topP {
            guard (0...1).contains(topP) else { throw APIError.badRequest("'top_p' must be between 0 and 1", param: "top_p") }
            sampling.topP = Float(topP)
        }
        if let topK {
            guard topK >= 0 else { throw APIError.badRequest("'top_k' must be ≥ 0", param: "top_k") }
            sampling.topK = topK
        }
        if let minP {
            guard (0...1).contains(minP) else { throw APIError.badRequest("'min_p' must be between 0 and 1", param: "min_p") }
            sampling.minP = Float(minP)
        }
        sampling.seed = seed.map { UInt64(bitPattern: $0) }
        options.sampling = sampling
        let stops = stop?.strings ?? []
        guard stops.count <= 4 else { throw APIError.badRequest("at most 4 stop strings", param: "stop") }
        options.stopStrings = stops
        options.stopAtEndOfGeneration = ignoreEos != true
        return options
    }

    /// The request's KV method: `kv` fields over the server's default (a new method starts without the default's
    /// options, with its row type).
    func kvConfiguration(default base: KVConfiguration) -> KVConfiguration {
        guard let kv else { return base }
        var result = base
        if let method = kv.method, method != base.method { result = KVConfiguration(method: method, kvType: base.kvType) }
        if let budget = kv.budget { result.budget = budget }
        if let options = kv.options { result.options.merge(options.mapValues(\.text)) { $1 } }
        return result
    }
}

/// What a request is checked against: the served model's name, tokenizer, chat template, context length and
/// the server's default KV method.
public struct RequestTarget: Sendable {
    public let modelID: String
    public let tokenizer: Tokenizer
    /// nil when the model has no usable chat template (chat requests are then refused).
    public let chat: ChatPrompt?
    public let contextLength: Int
    public let defaultKV: KVConfiguration

    public init(modelID: String, tokenizer: Tokenizer, chat: ChatPrompt?, contextLength: Int, defaultKV: KVConfiguration) {
        self.modelID = modelID
        self.tokenizer = tokenizer
        self.chat = chat
        self.contextLength = contextLength
        self.defaultKV = defaultKV
    }
}

/// A request body turned into what the scheduler runs, with no I/O: the route's first step, and the whole of
/// what the request fuzzer (Fuzz/Sources/FuzzRequest) drives.
public struct PreparedRequest: Sendable {
    /// The prompt's tokens: the chat template's rendering of `messages`, or `prompt` with a BOS.
    public let prompt: [Int]
    /// Validated, with `max_tokens` clamped to the room left in the context.
    public let options: GenerationOptions
    public let kv: KVConfiguration
    public let stream: Bool
    public let includeUsage: Bool

    /// Throws `APIError` (a 4xx in OpenAI's shape naming the field) for whatever the request gets wrong.
    public init(body: Data, chat: Bool, for target: RequestTarget) throws {
        let request = try CompletionRequest.parse(body)
        if let model = request.model, model != target.modelID {
            throw APIError(.notFound, "the model '\(model)' does not exist (this server serves '\(target.modelID)')", param: "model", code: "model_not_found")
        }
        prompt = try request.promptTokens(chat: chat, for: target)
        guard prompt.count < target.contextLength else {
            throw APIError.badRequest("the prompt has \(prompt.count) tokens; the model's context is \(target.contextLength) tokens",
                                      param: chat ? "messages" : "prompt", code: "context_length_exceeded")
        }
        options = try request.generationOptions(room: target.contextLength - prompt.count)
        kv = request.kvConfiguration(default: target.defaultKV)
        stream = request.stream == true
        includeUsage = request.streamOptions?.includeUsage == true
    }
}

extension CompletionRequest {
    /// Chat: `messages` rendered by the model's template (which writes the BOS); completion: `prompt` with a BOS.
    func promptTokens(chat: Bool, for target: RequestTarget) throws -> [Int] {
        if chat {
            guard let messages, !messages.isEmpty else { throw APIError.badRequest("'messages' must be a non-empty list", param: "messages") }
            guard let template = target.chat else { throw APIError.badRequest("the model has no chat template; use /v1/completions", param: "messages") }
            let text = try template.render(messages.map { ChatMessage(role: $0.role, content: $0.content) })
            return target.tokenizer.encode(text, addSpecial: false, parseSpecial: true)
        }
        guard let prompt, !prompt.text.isEmpty else { throw APIError.badRequest("'prompt' must be a non-empty string", param: "prompt") }
        return target.tokenizer.encode(prompt.text, addSpecial: true, parseSpecial: true)
    }
}
