import Foundation

/// Options of one generation.
public struct GenerationOptions: Sendable {
    public var maxTokens = 256
    public var sampling = SamplingParameters()
    /// Generation stops when the text contains one of these (the stop string is not returned).
    public var stopStrings: [String] = []
    /// Stop at the model's end-of-generation tokens (EOS, end of turn).
    public var stopAtEndOfGeneration = true

    public init() {}
}

/// Why a generation ended.
public enum StopReason: String, Sendable {
    case endOfGeneration = "eog", stopString = "stop", maxTokens = "length", contextFull = "context"
}

/// The outcome of one generation, with timings.
public struct GenerationResult: Sendable {
    public var tokens: [Int] = []
    public var text = ""
    public var stopReason = StopReason.maxTokens
    public var promptTokens = 0
    public var prefillSeconds = 0.0
    /// Decode steps run (generated tokens fed back into the model).
    public var decodeSteps = 0
    public var decodeSeconds = 0.0

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(decodeSteps) / decodeSeconds : 0 }
}

/// Runs prompt → tokens → text for one session, streaming text as it is produced.
public final class Generator {
    public let session: InferenceSession
    public let tokenizer: Tokenizer

    public init(session: InferenceSession, tokenizer: Tokenizer) {
        self.session = session
        self.tokenizer = tokenizer
    }

    /// Prefills `prompt` (appended to whatever the session already holds) and generates a continuation.
    /// `onText` receives each piece of new text as soon as it is final.
    public func generate(prompt: [Int], options: GenerationOptions,
                         progress: ((Int, Int) -> Void)? = nil, onText: (String) -> Void = { _ in }) throws -> GenerationResult {
        let start = Date()
        let logits = try session.prefill(prompt, progress: progress)
        let prefillSeconds = Date().timeIntervalSince(start)
        var result = try generate(after: logits, options: options, onText: onText)
        result.promptTokens = prompt.count
        result.prefillSeconds = prefillSeconds
        return result
    }

    /// Generates from the session's current state, given the logits of its last processed token
    /// (after `prefill`, or after `PrefillSnapshot.replay`).
    public func generate(after lastLogits: [Float], options: GenerationOptions,
                         onText: (String) -> Void = { _ in }) throws -> GenerationResult {
        var reply = ReplyBuilder(options: options, tokenizer: tokenizer)
        var logits = lastLogits
        let decodeStart = Date()
        while true {
            let (text, feed) = logits.withUnsafeMutableBufferPointer {
                reply.next(logits: $0, history: session.history, remainingContext: session.remainingContext)
            }
            onText(text)
            guard let token = feed else { break }
            logits = Array(try session.decode(token))
            reply.result.decodeSteps += 1
        }
        var result = reply.result
        result.decodeSeconds = Date().timeIntervalSince(decodeStart)
        return result
    }
}

/// Holds back streamed text that might be the start of a stop string.
struct StopStringFilter {
    let stopStrings: [String]
    private var pending = ""

    init(stopStrings: [String]) { self.stopStrings = stopStrings.filter { !$0.isEmpty } }

    /// Adds new text; returns the text that is safe to emit and whether a stop string was found.
    mutating func push(_ text: String, final: Bool = false) -> (String, Bool) {
        pending += text
        if let cut = stopStrings.compactMap({ pending.range(of: $0)?.lowerBound }).min() {
            let out = String(pending[..<cut])
            pending = ""
            return (out, true)
        }
        if final { defer { pending = "" }; return (pending, false) }
        // Keep the longest suffix of `pending` that is a prefix of some stop string.
        var keep = 0
        for stop in stopStrings {
            for length in stride(from: min(stop.count, pending.count), to: 0, by: -1)
            where length > keep && pending.hasSuffix(stop.prefix(length)) {
                keep = length
                break
            }
        }
        let out = String(pending.dropLast(keep))
        pending = String(pending.suffix(keep))
        return (out, false)
    }
}
