import CKernels

/// `quest`: Quest (spec §9.3, §16.7) with the paper's GQA modification. Keeps the full cache plus, per KV
/// head, pages of `P_Q` consecutive slots with the element-wise min and max of their keys (f16,
/// dimension-major: for each dimension the values of every page are contiguous).
///
/// Each decode step, per group: upper bounds `U[p] = Σ_h Σ_i max(q_h,i·Kmax[p,i], q_h,i·Kmin[p,i])` summed
/// over the group's query heads (raw bounds, all dimensions), the `pages` highest (ties: lower page), and
/// exact attention of every head over every token of the chosen pages. Traffic: both bound vectors of
/// every page plus the K and V rows of the chosen tokens.
public final class Quest: KVPolicy, KVStreamInspectable {
    public let shape: AttentionShape
    public let pageSize: Int
    public let pagesPerStep: Int
    /// `streams[layer][kvHead]`, with `bounds[layer][kvHead]` alongside.
    private let streams: [[KVStream]]
    public let bounds: [[PageBounds]]
    /// `[layer][kvHead]`: the pages chosen in the last decode step, ascending, and their scores.
    public private(set) var lastPages: [[[Int]]]
    public private(set) var lastScores: [[[Float]]]

    public init(shape: AttentionShape, pageSize: Int, pagesPerStep: Int) {
        self.shape = shape
        self.pageSize = pageSize
        self.pagesPerStep = pagesPerStep
        streams = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in KVStream(headDim: shape.headDim) } }
        bounds = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in PageBounds(headDim: shape.headDim, pageSize: pageSize) } }
        lastPages = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
        lastScores = lastPages.map { $0.map { _ in [] } }
    }

    /// Project defaults (spec §16.7): `P_Q = max(1, round(2S/t))`, pages = `max(1, round(t/(2·P_Q)))`.
    public static func defaultPageSize(sequenceLength s: Int, budget t: Int) -> Int { max(1, BaselineBudget.round(2 * Double(s) / Double(t))) }
    public static func defaultPages(budget t: Int, pageSize: Int) -> Int { max(1, BaselineBudget.round(Double(t) / Double(2 * pageSize))) }

    private func append(layer: Int, _ input: AttentionInput) -> Int {
        let before = streams[layer][0].count
        for (g, stream) in streams[layer].enumerated() {
            stream.append(input, head: g, kvHeads: shape.kvHeads)
            for s in before..<stream.count { bounds[layer][g].add(stream.keys + s * shape.headDim) }
        }
        return before
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let before = append(layer: layer, input)
        causalAttention(input, streams: streams[layer], visibleBefore: before, shape: shape, output: output)
    }

    public func finishPrefill() {}

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        _ = append(layer: layer, input)
        let d = shape.headDim, group = shape.groupSize
        var chosen = [[Int]](repeating: [], count: shape.kvHeads), scores = [[Float]](repeating: [], count: shape.kvHeads)
        for g in 0..<shape.kvHeads {
            let b = bounds[layer][g]
            var u = [Float](repeating: 0, count: b.pageCount)
            for h in (g * group)..<((g + 1) * group) { b.accumulateUpperBounds(query: input.queries + h * d, into: &u) }
            scores[g] = u
            chosen[g] = KVSelect.topIndices(u, pagesPerStep)
        }
        lastPages[layer] = chosen
        lastScores[layer] = scores
        let n = streams[layer][0].count
        ThreadPool.parallelFor(shape.queryHeads) { heads in
            for h in heads {
                let g = h / group
                var slots = [Int32]()
                slots.reserveCapacity(chosen[g].count * pageSize)
                for p in chosen[g] { for s in (p * pageSize)..<min(n, (p + 1) * pageSize) { slots.append(Int32(s)) } }
                slots.withUnsafeBufferPointer {
                    Attention.sparse(query: input.queries + h * d, stream: streams[layer][g], slots: $0, scale: shape.scale, output: output + h * d)
                }
            }
        }
    }

    public var inspectableStreams: [KVStream] { Array(streams.joined()) }

    public var statistics: KVStatistics {
        var s = KVStatistics()
        s.add(inspectableStreams, read: false)
        for (layer, row) in bounds.enumerated() {
            for (g, b) in row.enumerated() {
                s.storedBytes += b.allocatedBytes
                s.bytesReadLastStep += b.pageCount * 2 * shape.headDim * 2
                let n = streams[layer][g].count
                let tokens = lastPages[layer][g].reduce(0) { $0 + max(0, min(n, ($1 + 1) * pageSize) - $1 * pageSize) }
                s.bytesReadLastStep += tokens * 2 * shape.headDim * 2
            }
        }
        return s
    }
}

/// Element-wise key minimum and maximum of consecutive pages of slots, f16, dimension-major
/// (`min[i·capacity + p]`), filled as keys are appended.
public final class PageBounds {
    public let headDim: Int
    public let pageSize: Int
    public private(set) var pageCount = 0
    private var capacity = 0
    private var tokens = 0
    private var mins: [UInt16] = [], maxs: [UInt16] = []

    public init(headDim: Int, pageSize: Int) {
        self.headDim = headDim
        self.pageSize = pageSize
    }

    public var allocatedBytes: Int { (mins.count + maxs.count) * 2 }

    /// Element `i` of page `p`'s minimum and maximum.
    public func bound(page p: Int, dim i: Int) -> (min: Float, max: Float) {
        (halfToFloat(mins[i * capacity + p]), halfToFloat(maxs[i * capacity + p]))
    }

    /// Adds the next slot's f16 key.
    func add(_ key: UnsafePointer<UInt16>) {
        let p = tokens / pageSize
        tokens += 1
        if p == pageCount {
            if pageCount == capacity { grow() }
            pageCount += 1
            for i in 0..<headDim { mins[i * capacity + p] = key[i]; maxs[i * capacity + p] = key[i] }
            return
        }
        for i in 0..<headDim {
            let k = halfToFloat(key[i])
            if k < halfToFloat(mins[i * capacity + p]) { mins[i * capacity + p] = key[i] }
            if k > halfToFloat(maxs[i * capacity + p]) { maxs[i * capacity + p] = key[i] }
        }
    }

    private func grow() {
        let newCapacity = max(16, capacity * 2)
        var newMins = [UInt16](repeating: 0, count: headDim * newCapacity), newMaxs = newMins
        for i in 0..<headDim {
            for p in 0..<pageCount {
                newMins[i * newCapacity + p] = mins[i * capacity + p]
                newMaxs[i * newCapacity + p] = maxs[i * capacity + p]
            }
        }
        mins = newMins
        maxs = newMaxs
        capacity = newCapacity
    }

    /// `u[p] += Σ_i max(q_i·max[p,i], q_i·min[p,i])` for every page.
    func accumulateUpperBounds(query: UnsafePointer<Float>, into u: inout [Float]) {
        let n = pageCount
        var lo = [Float](repeating: 0, count: n), hi = lo
        mins.withUnsafeBufferPointer { mn in
            maxs.withUnsafeBufferPointer { mx in
                for i in 0..<headDim {
                    rk_f16_to_f32(mn.baseAddress! + i * capacity, &lo, Int32(n))
                    rk_f16_to_f32(mx.baseAddress! + i * capacity, &hi, Int32(n))
                    let q = query[i]
                    for p in 0..<n { u[p] += max(q * hi[p], q * lo[p]) }
                }
            }
        }
    }
}
