import CKernels

/// `quest`: Quest (spec §9.3, §16.7) with the paper's GQA modification. Keeps the full cache plus, per KV
/// head, pages of `P_Q` consecutive slots with the element-wise min and max of their keys (`PageMetadata`:
/// f16, dimension-major, so for each dimension the values of every page are contiguous).
///
/// Each decode step, per group: upper bounds `U[p] = Σ_h Σ_i max(q_h,i·Kmax[p,i], q_h,i·Kmin[p,i])` summed
/// over the group's query heads (raw bounds, all dimensions), the `pages` highest (ties: lower page), and
/// exact attention of every head over every token of the chosen pages. Traffic: both bound vectors of
/// every page plus the K and V rows of the chosen tokens.
public final class Quest: KVPolicy, KVStreamInspectable {
    static let pageSizeOption = KVOption("page-size", computed: "max(1, round(2S/t))", "tokens per page")
    static let pagesOption = KVOption("pages", computed: "max(1, round(t/(2·page-size)))", "pages attended per step")
    public static let method = KVMethod(
        name: "quest", summary: "Quest: page key min/max upper bounds summed over the group choose pages attended exactly; full cache kept.",
        options: [pageSizeOption, pagesOption], needsBudget: true) { context in
        let budget = try context.requiredBudget(), s = context.promptLength + context.maxNewTokens
        let pageSize = try context.int(pageSizeOption, computed: defaultPageSize(sequenceLength: s, budget: budget), range: 1...1_000_000)
        let pages = try context.int(pagesOption, computed: defaultPages(budget: budget, pageSize: pageSize), range: 1...1_000_000)
        return Quest(shape: context.shape, pageSize: pageSize, pagesPerStep: pages)
    }

    public let shape: AttentionShape
    public let pageSize: Int
    public let pagesPerStep: Int
    public let store: KVStore
    /// `bounds[layer][kvHead]`, over the slots of the matching stream.
    public let bounds: [[PageMetadata]]
    /// `[layer][kvHead]`: the pages chosen in the last decode step, ascending, and their scores.
    public private(set) var lastPages: [[[Int]]]
    public private(set) var lastScores: [[[Float]]]

    public init(shape: AttentionShape, pageSize: Int, pagesPerStep: Int) {
        self.shape = shape
        self.pageSize = pageSize
        self.pagesPerStep = pagesPerStep
        store = KVStore(shape: shape)
        bounds = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in PageMetadata(headDim: shape.headDim, pageSize: pageSize, precision: .f16) } }
        lastPages = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
        lastScores = lastPages.map { $0.map { _ in [] } }
        store.didAppend = { [unowned self] layer, g, _ in bounds[layer][g].extend(covering: store.streams[layer][g]) }
    }

    /// Project defaults (spec §16.7): `P_Q = max(1, round(2S/t))`, pages = `max(1, round(t/(2·P_Q)))`.
    public static func defaultPageSize(sequenceLength s: Int, budget t: Int) -> Int { max(1, roundHalfAway(2 * Double(s) / Double(t))) }
    public static func defaultPages(budget t: Int, pageSize: Int) -> Int { max(1, roundHalfAway(Double(t) / Double(2 * pageSize))) }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        store.appendAndAttend(layer: layer, input, output: output)
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        store.append(layer: layer, input)
        let d = shape.headDim, group = shape.groupSize
        var chosen = [[Int]](repeating: [], count: shape.kvHeads), scores = [[Float]](repeating: [], count: shape.kvHeads)
        for g in 0..<shape.kvHeads {
            let b = bounds[layer][g]
            var u = [Float](repeating: 0, count: b.pages)
            for h in (g * group)..<((g + 1) * group) { Self.accumulateUpperBounds(b, query: input.queries + h * d, into: &u) }
            scores[g] = u
            chosen[g] = KVSelect.topIndices(u, pagesPerStep)
        }
        lastPages[layer] = chosen
        lastScores[layer] = scores
        let n = store.count(layer: layer), layerStreams = store.streams[layer]
        let pageSize = pageSize, shape = shape
        nonisolated(unsafe) let output = output   // each head writes its own row
        ThreadPool.parallelFor(shape.queryHeads) { [chosen] heads in
            for h in heads {
                let g = h / group
                var slots = [Int32]()
                slots.reserveCapacity(chosen[g].count * pageSize)
                for p in chosen[g] { for s in (p * pageSize)..<min(n, (p + 1) * pageSize) { slots.append(Int32(s)) } }
                slots.withUnsafeBufferPointer {
                    Attention.sparse(query: input.queries + h * d, stream: layerStreams[g], slots: $0, scale: shape.scale, output: output + h * d)
                }
            }
        }
    }

    /// `u[p] += Σ_i max(q_i·max[p,i], q_i·min[p,i])` for every page.
    static func accumulateUpperBounds(_ bounds: PageMetadata, query: UnsafePointer<Float>, into u: inout [Float]) {
        let n = bounds.pages
        var lo = [Float](repeating: 0, count: n), hi = lo
        for i in 0..<bounds.headDim {
            rk_f16_to_f32(bounds.halfStrip(dim: i, max: false), &lo, Int32(n))
            rk_f16_to_f32(bounds.halfStrip(dim: i, max: true), &hi, Int32(n))
            let q = query[i]
            for p in 0..<n { u[p] += max(q * hi[p], q * lo[p]) }
        }
    }

    public var inspectableStreams: [KVStream] { store.inspectableStreams }

    public var statistics: KVStatistics {
        var s = store.statistics(readingAll: false)
        for (layer, row) in bounds.enumerated() {
            for (g, b) in row.enumerated() {
                s.storedBytes += b.allocatedBytes
                s.bytesReadLastStep += b.pages * 2 * shape.headDim * 2
                let n = store.streams[layer][g].count
                let tokens = lastPages[layer][g].reduce(0) { $0 + max(0, min(n, ($1 + 1) * pageSize) - $1 * pageSize) }
                s.bytesReadLastStep += tokens * shape.rowPairBytes
            }
        }
        return s
    }
}
