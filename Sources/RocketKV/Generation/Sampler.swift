#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Settings of the token sampler. The defaults follow llama.cpp's, except that temperature 0
/// (greedy decoding) is the default here.
///
/// - `temperature` (default 0): logits are divided by it before the final draw. 0 or less means
///   greedy: the highest logit after the repetition penalty, ties going to the lower token id.
///   llama.cpp's command-line default is 0.8.
/// - `topK` (default 40): keep the `topK` highest logits. 0 or less disables it.
/// - `topP` (default 0.95): nucleus sampling: keep the smallest set of highest-probability tokens whose
///   probabilities (softmax at temperature 1 over what top-k kept) sum to at least `topP`. 1 or more disables it.
/// - `minP` (default 0.05): drop tokens whose probability is below `minP` times the top token's,
///   i.e. logits below `max + log(minP)`. 0 or less disables it.
/// - `repetitionPenalty` (default 1.0, off): for each distinct token among the last `repetitionWindow`
///   of the history, a positive logit is divided by the penalty and a non-positive one multiplied
///   by it (llama.cpp's rule). Values above 1 discourage repeats.
/// - `repetitionWindow` (default 64): how many of the most recent history tokens the penalty looks at;
///   0 disables the penalty, a negative value means the whole history.
/// - `seed` (default nil): seed of the random generator; nil draws one from the system generator
///   (see `Sampler.seed`). The random stream is the same on every platform, so the same seed, logits
///   and history give the same tokens (barring an ulp of difference in the C library's `expf` landing
///   exactly on a draw's boundary).
///
/// The chain runs in llama.cpp's order: repetition penalty → top-k → top-p → min-p → temperature → draw.
/// Each filter always keeps at least the top token.
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float
    public var topK: Int
    public var topP: Float
    public var minP: Float
    public var repetitionPenalty: Float
    public var repetitionWindow: Int
    public var seed: UInt64?

    public init(temperature: Float = 0, topK: Int = 40, topP: Float = 0.95, minP: Float = 0.05,
                repetitionPenalty: Float = 1.0, repetitionWindow: Int = 64, seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.repetitionWindow = repetitionWindow
        self.seed = seed
    }

    /// Greedy decoding (argmax), no repetition penalty.
    public static let greedy = SamplingParameters()
}

/// xoshiro256** (Blackman & Vigna), seeded by expanding a 64-bit seed with SplitMix64.
/// Platform-independent and reproducible: the same seed gives the same sequence everywhere.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(); s1 = splitMix(); s2 = splitMix(); s3 = splitMix()
    }

    @inline(__always)
    private static func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = Self.rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = Self.rotateLeft(s3, 45)
        return result
    }

    /// A uniform Double in [0, 1) from the top 53 bits of the next output.
    public mutating func nextUnitDouble() -> Double { Double(next() >> 11) * 0x1p-53 }
}

/// Chooses the next token from a vector of logits (see `SamplingParameters` for the chain).
///
/// Keeps its random generator and scratch buffers between calls; use one sampler per generation.
/// Cost per call: O(vocab) for greedy; top-k selects with a size-k heap (O(vocab · log k) worst case,
/// about O(vocab) in practice) and sorts only the k kept; top-p without top-k grows a heap selection
/// until the nucleus is found, so the whole vocabulary is sorted only for very flat distributions.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    /// The seed in use (the one from the parameters, or the one drawn when they had none).
    public let seed: UInt64
    private var rng: Xoshiro256StarStar
    private var candidates: [Candidate] = []
    private var weights: [Double] = []
    private var pool: [Candidate] = []

    private struct Candidate {
        var id: Int32
        var logit: Float
        /// Ordering of the chain: higher logit first, then lower id.
        @inline(__always) func isBetter(than other: Candidate) -> Bool {
            logit > other.logit || (logit == other.logit && id < other.id)
        }
    }

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        var system = SystemRandomNumberGenerator()
        self.seed = parameters.seed ?? system.next()
        self.rng = Xoshiro256StarStar(seed: seed)
    }

    /// Samples a token id from `logits` (one per vocabulary entry), given the tokens so far in
    /// `history` (oldest first; ids outside the vocabulary are ignored). May modify `logits`
    /// (the repetition penalty is applied in place).
    public mutating func sample(logits: UnsafeMutableBufferPointer<Float>, history: [Int]) -> Int {
        precondition(!logits.isEmpty, "cannot sample from an empty vocabulary")
        applyRepetitionPenalty(logits, history: history)
        let p = parameters
        guard p.temperature > 0 else { return Sampler.argmax(UnsafeBufferPointer(logits)) }

        // Degenerate inputs (no finite maximum): fall back to argmax rather than divide by infinity.
        let best = Sampler.argmax(UnsafeBufferPointer(logits))
        let maxLogit = logits[best]
        guard maxLogit.isFinite else { return best }

        selectCandidates(logits, maxLogit: maxLogit)
        return draw(maxLogit: maxLogit)
    }

    /// Convenience over an array.
    public mutating func sample(logits: inout [Float], history: [Int]) -> Int {
        logits.withUnsafeMutableBufferPointer { sample(logits: $0, history: history) }
    }

    /// Index of the largest value, ties to the lower index; NaN never wins (index 0 if all are NaN).
    public static func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
        var bestIndex = 0
        var best = -Float.infinity
        for i in values.indices where values[i] > best {
            best = values[i]
            bestIndex = i
        }
        return bestIndex
    }

    // MARK: - Chain steps

    private func applyRepetitionPenalty(_ logits: UnsafeMutableBufferPointer<Float>, history: [Int]) {
        let penalty = parameters.repetitionPenalty
        let window = parameters.repetitionWindow
        guard penalty != 1, window != 0, !history.isEmpty else { return }
        let recent = window < 0 ? history[...] : history.suffix(window)
        var seen = Set<Int>(minimumCapacity: recent.count)
        for token in recent where token >= 0 && token < logits.count && seen.insert(token).inserted {
            if logits[token] <= 0 {
                logits[token] *= penalty
            } else {
                logits[token] /= penalty
            }
        }
    }

    /// Fills `candidates` with what survives top-k, top-p and min-p (best first when top-k or top-p is on).
    private mutating func selectCandidates(_ logits: UnsafeMutableBufferPointer<Float>, maxLogit: Float) {
        let p = parameters
        let n = logits.count
        let k = p.topK > 0 ? min(p.topK, n) : n
        let topPActive = p.topP < 1
        let minLogit: Float = p.minP > 0 ? maxLogit + logf(p.minP) : -.infinity
        candidates.removeAll(keepingCapacity: true)

        if k == n && !topPActive {
            // Neither top-k nor top-p: order does not matter, min-p is a plain threshold.
            for i in 0..<n where logits[i] >= minLogit {
                candidates.append(Candidate(id: Int32(i), logit: logits[i]))
            }
            return
        }

        // Top-p uses the softmax (temperature 1) over what top-k kept.
        var normalizer = 0.0
        if k < n {
            selectBest(k, of: logits)
            for c in candidates { normalizer += Double(expf(c.logit - maxLogit)) }
        } else {
            // Top-p over the whole vocabulary: the softmax sum runs over all tokens, but only those that
            // pass min-p can end up kept (top-p keeps a prefix of the sorted order, and min-p cuts that
            // prefix at its threshold), so only they go into the pool. The nucleus is then looked for in
            // the best m of the pool for growing m: one pass for a peaked distribution, and a sort of
            // the pool for a flat one.
            pool.removeAll(keepingCapacity: true)
            for i in 0..<n {
                let logit = logits[i]
                if logit.isNaN { continue }
                normalizer += Double(expf(logit - maxLogit))
                if logit >= minLogit { pool.append(Candidate(id: Int32(i), logit: logit)) }
            }
            var m = 256
            while true {
                if 4 * m >= pool.count {
                    swap(&candidates, &pool)
                    candidates.sort { $0.isBetter(than: $1) }
                    break
                }
                selectBest(m, of: pool)
                if topPCut(normalizer: normalizer, maxLogit: maxLogit) != nil { break }
                m *= 8
            }
        }

        if topPActive, let last = topPCut(normalizer: normalizer, maxLogit: maxLogit) {
            candidates.removeSubrange((last + 1)...)
        }
        if let cut = candidates.firstIndex(where: { !($0.logit >= minLogit) }), cut > 0 {
            candidates.removeSubrange(cut...)
        }
    }

    /// Index of the last candidate top-p keeps: the first where the cumulative probability reaches
    /// `topP` (nil if the candidates do not reach it).
    private func topPCut(normalizer: Double, maxLogit: Float) -> Int? {
        let target = Double(parameters.topP)
        var cumulative = 0.0
        for i in candidates.indices {
            cumulative += Double(expf(candidates[i].logit - maxLogit)) / normalizer
            if cumulative >= target { return i }
        }
        return nil
    }

    /// The `k` best tokens of `logits` (by logit, then lower id; NaN skipped) into `candidates`, sorted best first.
    private mutating func selectBest(_ k: Int, of logits: UnsafeMutableBufferPointer<Float>) {
        candidates.removeAll(keepingCapacity: true)
        candidates.reserveCapacity(k)
        var floor = -Float.infinity
        for i in 0..<logits.count where logits[i] >= floor {  // also skips NaN
            offer(Candidate(id: Int32(i), logit: logits[i]), k: k, floor: &floor)
        }
        candidates.sort { $0.isBetter(than: $1) }
    }

    /// The `k` best of `pool` into `candidates`, sorted best first.
    private mutating func selectBest(_ k: Int, of pool: [Candidate]) {
        candidates.removeAll(keepingCapacity: true)
        candidates.reserveCapacity(k)
        var floor = -Float.infinity
        for c in pool where c.logit >= floor { offer(c, k: k, floor: &floor) }
        candidates.sort { $0.isBetter(than: $1) }
    }

    /// Adds `c` to the size-`k` min-heap in `candidates` (root: the worst token kept so far) if it
    /// belongs there. `floor` is the root's logit once the heap is full, for a fast reject by the caller.
    @inline(__always)
    private mutating func offer(_ c: Candidate, k: Int, floor: inout Float) {
        if candidates.count < k {
            candidates.append(c)
            var child = candidates.count - 1
            while child > 0 {  // sift up
                let parent = (child - 1) / 2
                guard candidates[parent].isBetter(than: candidates[child]) else { break }
                candidates.swapAt(parent, child)
                child = parent
            }
            if candidates.count == k { floor = candidates[0].logit }
        } else if c.isBetter(than: candidates[0]) {
            candidates[0] = c
            var parent = 0
            while true {  // sift down
                let left = 2 * parent + 1, right = left + 1
                var worst = parent
                if left < k && candidates[worst].isBetter(than: candidates[left]) { worst = left }
                if right < k && candidates[worst].isBetter(than: candidates[right]) { worst = right }
                if worst == parent { break }
                candidates.swapAt(parent, worst)
                parent = worst
            }
            floor = candidates[0].logit
        }
    }

    /// Draws from `candidates` with probabilities softmax(logit / temperature).
    private mutating func draw(maxLogit: Float) -> Int {
        guard candidates.count > 1 else { return Int(candidates.first?.id ?? 0) }
        let temperature = parameters.temperature
        weights.removeAll(keepingCapacity: true)
        var total = 0.0
        for c in candidates {
            var w = Double(expf((c.logit - maxLogit) / temperature))
            if !(w > 0) { w = 0 }  // -inf logits (and NaN from an infinite temperature)
            weights.append(w)
            total += w
        }
        let u = rng.nextUnitDouble() * total
        var cumulative = 0.0
        var lastPositive = 0
        for i in weights.indices where weights[i] > 0 {
            cumulative += weights[i]
            lastPositive = i
            if u < cumulative { return Int(candidates[i].id) }
        }
        return Int(candidates[lastPositive].id)  // rounding left u at the very end
    }
}
