/// The token rows of one forward pass: one or more sequences, each a run of consecutive tokens with its own
/// absolute positions and its own KV policy.
///
/// A prompt chunk of one sequence is a batch of one segment. A server step is a decode row for every active
/// sequence plus prefill chunks of new ones: the matrices multiply all rows at once (the weights are read
/// once per step for every sequence) while each segment's attention goes to its own policy.
public struct ForwardBatch {
    /// Consecutive tokens of one sequence.
    public struct Segment {
        public let tokens: [Int]
        /// Absolute position of the first token.
        public let position: Int
        public let policy: KVPolicy
        /// The policy's decode path (exactly one token) instead of prefill.
        public let decode: Bool
        /// Which of the segment's rows need logits.
        public let logits: Logits

        public init(tokens: [Int], position: Int, policy: KVPolicy, decode: Bool, logits: Logits) {
            precondition(!tokens.isEmpty && (!decode || tokens.count == 1), "a segment has tokens; a decode segment exactly one")
            self.tokens = tokens
            self.position = position
            self.policy = policy
            self.decode = decode
            self.logits = logits
        }
    }

    public let segments: [Segment]
    /// Every segment's tokens, in order: the rows of the pass.
    let tokens: [Int]
    /// The absolute position of each row.
    let positions: [Int]
    /// Each segment's first row.
    let firstRows: [Int]
    /// The rows whose logits the pass returns, in order (segment by segment, as each asked).
    public let logitRows: [Int]

    public init(_ segments: [Segment]) {
        precondition(!segments.isEmpty, "a forward pass has at least one segment")
        self.segments = segments
        var tokens: [Int] = [], positions: [Int] = [], firstRows: [Int] = [], logitRows: [Int] = []
        for segment in segments {
            let first = tokens.count, n = segment.tokens.count
            firstRows.append(first)
            tokens += segment.tokens
            positions += segment.position..<(segment.position + n)
            switch segment.logits {
            case .none: break
            case .last: logitRows.append(first + n - 1)
            case .all: logitRows += first..<(first + n)
            }
        }
        (self.tokens, self.positions, self.firstRows, self.logitRows) = (tokens, positions, firstRows, logitRows)
    }

    /// Rows in the pass.
    public var count: Int { tokens.count }
}
