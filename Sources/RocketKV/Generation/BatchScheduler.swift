import CKernels
import Foundation

/// What a generation reports as it runs.
public enum GenerationEvent: Sendable {
    /// The prompt is processed; `cachedTokens` of its tokens came from an idle conversation's KV state.
    case started(promptTokens: Int, cachedTokens: Int)
    /// New text of the reply (possibly empty).
    case text(String)
    /// The reply is complete.
    case finished(GenerationReport)
}

/// The outcome of one scheduled generation.
public struct GenerationReport: Sendable {
    /// Tokens, text, stop reason and timings (`promptTokens` counts the prompt tokens prefilled, not those reused).
    public var result: GenerationResult
    /// Prompt tokens whose KV state was continued from an earlier conversation instead of prefilled.
    public var cachedTokens: Int
    /// KV cache figures of the sequence at its end.
    public var kv: KVStatistics
    /// Mean KV bytes read per decode step.
    public var kvBytesReadPerToken: Double
    /// The resolved plan of the KV method, when it has one.
    public var plan: String?
}

/// Why a request was not accepted.
public enum SchedulerError: Error, Equatable, CustomStringConvertible {
    /// Every sequence slot is busy and the queue is full.
    case queueFull
    /// The prompt (with at least one token to generate) does not fit in the model's context.
    case promptTooLong(tokens: Int, context: Int)
    case emptyPrompt
    case invalidToken(Int)
    /// The scheduler was shut down.
    case stopped

    public var description: String {
        switch self {
        case .queueFull: return "the server is busy: every sequence slot is taken and the queue is full"
        case .promptTooLong(let tokens, let context): return "the prompt has \(tokens) tokens; the model's context is \(context) tokens"
        case .emptyPrompt: return "the prompt is empty"
        case .invalidToken(let id): return "token id \(id) is not in the vocabulary"
        case .stopped: return "the scheduler has stopped"
        }
    }
}

/// Counts of the scheduler's work at one moment.
public struct SchedulerStatus: Sendable {
    public var active = 0
    public var queued = 0
    public var idleConversations = 0
    /// KV bytes held, by method: the active sequences' and the idle conversations'.
    public var kvBytesByMethod: [String: Int] = [:]
}

/// Runs many generations on one engine: each step is one forward pass with a decode row for every active
/// sequence and a prefill chunk of the sequences still reading their prompt, so the weights are read once per
/// step for all of them while each attends through its own KV policy.
///
/// At most `parallel` sequences are active; up to `queueLimit` more wait (further requests are refused with
/// `SchedulerError.queueFull`). Prefill is interleaved in chunks of at most `prefillChunk` tokens per step, so
/// a long prompt does not stall the replies in progress. Finished conversations stay in a `ConversationCache`
/// of `cacheBytes`; a request that extends one continues its KV state. When the consuming task is cancelled
/// or the stream dropped, the sequence is removed at the next step and its memory freed.
///
/// The steps run on a thread of the scheduler's own; `generate` can be called from any thread or task.
// @unchecked: the mutable state is guarded by `lock`; sequences' generation state is touched only by the step thread.
public final class BatchScheduler: @unchecked Sendable {
    public let engine: Engine
    public let tokenizer: Tokenizer
    public let parallel: Int
    public let queueLimit: Int
    public let prefillChunk: Int

    private let lock = NSCondition()
    private var waiting: [Sequence] = []
    private var active: [Sequence] = []
    private let cache: ConversationCache
    private var stopped = false
    private let state = ForwardState()

    /// Starts the step thread (it keeps the scheduler alive until `shutdown`).
    public init(engine: Engine, tokenizer: Tokenizer, parallel: Int = 4, queueLimit: Int = 64,
                prefillChunk: Int = 256, cacheBytes: Int = 1 << 30) {
        precondition(parallel >= 1 && queueLimit >= 0 && prefillChunk >= 1)
        self.engine = engine
        self.tokenizer = tokenizer
        self.parallel = parallel
        self.queueLimit = queueLimit
        self.prefillChunk = prefillChunk
        cache = ConversationCache(capacityBytes: cacheBytes)
        let thread = Thread { self.run() }
        thread.name = "rocketkv-scheduler"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Generates a reply to `prompt` (the whole conversation's tokens) with the KV method `kv`.
    ///
    /// Throws at once when the request cannot be taken (`SchedulerError`, `KVMethodError`); errors later
    /// end the stream. Cancelling the consuming task cancels the sequence.
    public func generate(prompt: [Int], options: GenerationOptions, kv: KVConfiguration = KVConfiguration()) throws
        -> AsyncThrowingStream<GenerationEvent, Error> {
        let context = engine.model.config.contextLength, vocabulary = engine.model.config.vocabularySize
        guard !prompt.isEmpty else { throw SchedulerError.emptyPrompt }
        if let bad = prompt.first(where: { $0 < 0 || $0 >= vocabulary }) { throw SchedulerError.invalidToken(bad) }
        guard prompt.count < context else { throw SchedulerError.promptTooLong(tokens: prompt.count, context: context) }
        try kv.validate(for: engine.model)

        let (stream, continuation) = AsyncThrowingStream.makeStream(of: GenerationEvent.self)
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { throw SchedulerError.stopped }
        guard active.count + waiting.count < parallel + queueLimit else { throw SchedulerError.queueFull }
        let session: InferenceSession
        if let cached = cache.take(prefixOf: prompt, kv: kv) {
            session = cached
        } else {
            session = engine.session(policy: try kv.makePolicy(model: engine.model, promptLength: prompt.count, maxNewTokens: options.maxTokens))
        }
        let sequence = Sequence(session: session, prompt: prompt, options: options, kv: kv, tokenizer: tokenizer, continuation: continuation)
        continuation.onTermination = { [weak self, weak sequence] termination in
            guard case .cancelled = termination, let self, let sequence else { return }
            self.lock.withLock { sequence.cancelled = true }
            self.lock.signal()
        }
        waiting.append(sequence)
        lock.signal()
        return stream
    }

    /// The counts of the moment (for metrics and health).
    public var status: SchedulerStatus {
        lock.withLock {
            var s = SchedulerStatus(active: active.count, queued: waiting.count, idleConversations: cache.entries.count)
            for sequence in active { s.kvBytesByMethod[sequence.kv.method, default: 0] += sequence.storedBytes }
            for entry in cache.entries { s.kvBytesByMethod[entry.kv.method, default: 0] += entry.bytes }
            return s
        }
    }

    /// Drops the idle conversations.
    public func clearCache() { lock.withLock { cache.removeAll() } }

    /// Ends every generation with `SchedulerError.stopped` and stops the step thread after its current step.
    public func shutdown() {
        lock.withLock { stopped = true }
        lock.signal()
    }

    // MARK: The step thread

    private func run() {
        while true {
            lock.lock()
            while !stopped && waiting.isEmpty && active.isEmpty { lock.wait() }
            if stopped {
                let all = active + waiting
                (active, waiting) = ([], [])
                cache.removeAll()
                lock.unlock()
                for sequence in all { sequence.continuation.finish(throwing: SchedulerError.stopped) }
                return
            }
            let cancelled = (active + waiting).filter(\.cancelled)
            active.removeAll { $0.cancelled }
            waiting.removeAll { $0.cancelled }
            while active.count < parallel, !waiting.isEmpty { active.append(waiting.removeFirst()) }
            let running = active
            lock.unlock()

            for sequence in cancelled { sequence.continuation.finish(throwing: CancellationError()) }
            if !cancelled.isEmpty { rk_release_free_memory() }
            guard !running.isEmpty else { continue }
            step(running)
            // The policies change only on this thread: their figures are copied for `status` under the lock.
            let stored = running.map { $0.session.policy.statistics.storedBytes }
            lock.withLock { for (sequence, bytes) in zip(running, stored) { sequence.storedBytes = bytes } }

            // Bookkeeping before the consumers hear of the end, so that a follow-up request finds the slot free
            // and the conversation in the cache.
            let finished = running.filter(\.isFinished)
            guard !finished.isEmpty else { continue }
            lock.withLock {
                active.removeAll { $0.isFinished }
                for sequence in finished where !sequence.cancelled { cache.insert(sequence.session, kv: sequence.kv) }
            }
            rk_release_free_memory()
            for sequence in finished { sequence.reportEnd() }
        }
    }

    /// One forward pass over every running sequence: a decode row each for those generating, then prompt chunks
    /// (at most `prefillChunk` tokens in all) for those still reading their prompt.
    private func step(_ running: [Sequence]) {
        var segments: [ForwardBatch.Segment] = [], members: [(Sequence, [Int])] = []
        for sequence in running {
            guard let token = sequence.nextToken else { continue }
            segments.append(.init(tokens: [token], position: sequence.session.position, policy: sequence.session.policy, decode: true, logits: .last))
            members.append((sequence, [token]))
        }
        var budget = prefillChunk
        for sequence in running where !sequence.pending.isEmpty && budget > 0 {
            let chunk = Array(sequence.pending.prefix(budget))
            budget -= chunk.count
            let last = chunk.count == sequence.pending.count
            segments.append(.init(tokens: chunk, position: sequence.session.position, policy: sequence.session.policy, decode: false,
                                  logits: last ? .last : .none))
            members.append((sequence, chunk))
        }
        guard !segments.isEmpty else { return }
        let batch = ForwardBatch(segments)
        let logits = engine.pool.install { engine.model.forward(batch, state: state) }
        let vocabulary = engine.model.config.vocabularySize
        var row = 0
        for ((sequence, tokens), segment) in zip(members, segments) {
            sequence.session.didProcess(tokens)
            if segment.decode {
                sequence.didDecode()
            } else {
                sequence.pending.removeFirst(tokens.count)
                guard sequence.pending.isEmpty else { continue }
                sequence.session.finishPrompt()
                sequence.didFinishPrompt()
            }
            var rowLogits = Array(logits[(row * vocabulary)..<((row + 1) * vocabulary)])
            row += 1
            rowLogits.withUnsafeMutableBufferPointer { sequence.accept(logits: $0) }
        }
    }
}

/// One generation in the scheduler: its session, the prompt tokens still to prefill, and its reply.
// @unchecked: `cancelled` and `storedBytes` are read and written under the scheduler's lock; everything else only on
// its step thread.
private final class Sequence: @unchecked Sendable {
    let session: InferenceSession
    let kv: KVConfiguration
    let continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
    /// Set (under the scheduler's lock) when the consumer goes away.
    var cancelled = false
    /// KV bytes the policy held after the last step (under the scheduler's lock).
    var storedBytes = 0
    /// Prompt tokens not yet run through the model.
    var pending: [Int]
    /// The sampled token to feed in the next step, while generating.
    private(set) var nextToken: Int?
    /// The reply is complete (`reportEnd` tells the consumer).
    var isFinished: Bool { report != nil }
    private var report: GenerationReport?
    private var reply: ReplyBuilder
    private let cachedTokens: Int
    private let start = Date()
    private var decodeStart = Date()
    private var bytesRead = 0

    init(session: InferenceSession, prompt: [Int], options: GenerationOptions, kv: KVConfiguration, tokenizer: Tokenizer,
         continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation) {
        self.session = session
        self.kv = kv
        self.continuation = continuation
        cachedTokens = session.position
        pending = Array(prompt[session.position...])
        reply = ReplyBuilder(options: options, tokenizer: tokenizer)
    }

    func didFinishPrompt() {
        reply.result.promptTokens = session.position - cachedTokens
        reply.result.prefillSeconds = Date().timeIntervalSince(start)
        decodeStart = Date()
        continuation.yield(.started(promptTokens: session.position, cachedTokens: cachedTokens))
    }

    func didDecode() {
        reply.result.decodeSteps += 1
        bytesRead += session.policy.statistics.bytesReadLastStep
    }

    /// Takes the logits of the last processed token: samples, streams the text, and finishes or queues the token.
    func accept(logits: UnsafeMutableBufferPointer<Float>) {
        let (text, feed) = reply.next(logits: logits, history: session.history, remainingContext: session.remainingContext)
        if !text.isEmpty { continuation.yield(.text(text)) }
        nextToken = feed
        guard feed == nil else { return }
        reply.result.decodeSeconds = Date().timeIntervalSince(decodeStart)
        let steps = reply.result.decodeSteps
        report = GenerationReport(result: reply.result, cachedTokens: cachedTokens, kv: session.policy.statistics,
                                  kvBytesReadPerToken: steps > 0 ? Double(bytesRead) / Double(steps) : 0, plan: session.policy.planDescription)
    }

    /// Sends the report and ends the stream.
    func reportEnd() {
        if let report { continuation.yield(.finished(report)) }
        continuation.finish()
    }
}
