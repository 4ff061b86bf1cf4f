import CKernels

/// Errors a caller can act on (bad input rather than bugs).
public struct InferenceError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One sequence being processed: the model, its KV policy, and the absolute position reached.
///
/// Prompts (and, in a chat, every new turn) go through `prefill`; generated tokens through `decode`.
/// The policy's memory is released when the session is deallocated.
public final class InferenceSession {
    public let model: LanguageModel
    public let policy: KVPolicy
    /// The pool `prefill` and `decode` run on (installed around them); nil: the calling thread's current pool.
    public let pool: ThreadPool?
    /// Number of tokens processed so far (the absolute position of the next token).
    public private(set) var position = 0
    /// Every token processed, in order.
    public private(set) var history: [Int] = []
    /// Prompt tokens per forward call during prefill.
    public var chunkSize = 512
    private let state = ForwardState()

    /// A session on `pool` (`Engine.session(policy:)` passes the engine's).
    public init(model: LanguageModel, policy: KVPolicy, pool: ThreadPool? = nil) {
        self.model = model
        self.policy = policy
        self.pool = pool
    }

    /// A session whose policy already holds `history` (filled by `PrefillSnapshot.replay`).
    public init(model: LanguageModel, policy: KVPolicy, resumingAfter history: [Int], pool: ThreadPool? = nil) {
        self.model = model
        self.policy = policy
        self.pool = pool
        self.history = history
        position = history.count
    }

    /// Room left in the model's context window.
    public var remainingContext: Int { model.config.contextLength - position }

    /// Processes prompt tokens in chunks with dense attention, then lets the policy compress
    /// (`finishPrefill`). Returns the logits of the last token (or of every token with `.all`).
    @discardableResult
    public func prefill(_ tokens: [Int], logits: Logits = .last, allowBeyondContext: Bool = false,
                        progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> [Float] {
        guard !tokens.isEmpty else { throw InferenceError("empty prompt") }
        try checkRoom(for: tokens.count, allowBeyondContext: allowBeyondContext)
        try checkVocabulary(tokens)
        return ThreadPool.install(pool) { prefillChunks(tokens, logits: logits, progress: progress) }
    }

    private func prefillChunks(_ tokens: [Int], logits: Logits, progress: ((Int, Int) -> Void)?) -> [Float] {
        var result: [Float] = []
        var done = 0
        while done < tokens.count {
            let chunk = Array(tokens[done..<min(tokens.count, done + chunkSize)])
            let isLast = done + chunk.count == tokens.count
            let wanted: Logits = logits == .all ? .all : (isLast ? logits : .none)
            let out = model.forward(chunk, from: position, policy: policy, logits: wanted, state: state)
            result.append(contentsOf: out)
            didProcess(chunk)
            done += chunk.count
            progress?(done, tokens.count)
        }
        finishPrompt()
        return result
    }

    /// Records `tokens` as run through the model (by this session, or by a batched forward that included it).
    func didProcess(_ tokens: [Int]) {
        position += tokens.count
        history += tokens
    }

    /// Ends a prompt: the policy compresses, and the memory it freed goes back to the system.
    func finishPrompt() {
        policy.finishPrefill()
        // glibc keeps freed heap blocks for reuse: hand the evicted tokens' memory back to the system.
        rk_release_free_memory()
    }

    /// Feeds one token through the policy's decode path and returns the next-token logits.
    public func decode(_ token: Int, allowBeyondContext: Bool = false) throws -> UnsafeBufferPointer<Float> {
        try checkRoom(for: 1, allowBeyondContext: allowBeyondContext)
        try checkVocabulary([token])
        let out = ThreadPool.install(pool) { model.forward([token], from: position, policy: policy, decode: true, logits: .last, state: state) }
        didProcess([token])
        return out
    }

    /// One decode step of several sessions of the same model as one batched forward pass (the weights are read
    /// once for all of them), as a server step runs them: `tokens[i]` goes to `sessions[i]`. Returns the logits
    /// `[sessions.count][vocabularySize]` in `state`'s buffer, valid until its next use; each session's row is
    /// bit for bit what its own `decode` would give. Runs on the calling thread's current pool.
    public static func decode(_ tokens: [Int], sessions: [InferenceSession], state: ForwardState,
                              allowBeyondContext: Bool = false) throws -> UnsafeBufferPointer<Float> {
        guard tokens.count == sessions.count, let model = sessions.first?.model else {
            throw InferenceError("a batched decode step needs one token per session and at least one session")
        }
        guard sessions.allSatisfy({ $0.model === model }), Set(sessions.map(ObjectIdentifier.init)).count == sessions.count else {
            throw InferenceError("a batched decode step needs distinct sessions of one model")
        }
        for (session, token) in zip(sessions, tokens) {
            try session.checkRoom(for: 1, allowBeyondContext: allowBeyondContext)
            try session.checkVocabulary([token])
        }
        let batch = ForwardBatch(zip(sessions, tokens).map { session, token in
            .init(tokens: [token], position: session.position, policy: session.policy, decode: true, logits: .last)
        })
        let logits = model.forward(batch, state: state)
        for (session, token) in zip(sessions, tokens) { session.didProcess([token]) }
        return logits
    }

    private func checkVocabulary(_ tokens: [Int]) throws {
        let vocabulary = model.config.vocabularySize
        if let bad = tokens.first(where: { !(0..<vocabulary).contains($0) }) {
            throw InferenceError("token id \(bad) is outside the model's vocabulary of \(vocabulary)")
        }
    }

    private func checkRoom(for count: Int, allowBeyondContext: Bool) throws {
        guard allowBeyondContext || position + count <= model.config.contextLength else {
            throw InferenceError("\(position + count) tokens exceed the model's context of \(model.config.contextLength) tokens")
        }
    }
}
