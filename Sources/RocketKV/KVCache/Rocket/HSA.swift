import Foundation
import CKernels

/// What HSA decided for one KV group in one step (intermediate values are kept for tests and diagnostics).
public struct HSASelection {
    /// Selected cache slots (`min(k2, N)` of them): whole pages in descending score order, then the lowest
    /// slots of a partially taken page (§16.2).
    public var slots: [Int32]
    /// `I1`: the `k1` head dimensions used, largest group `Σ|q|` first.
    public var dims: [Int]
    /// Group sign per dimension of `dims` (`true` = +1, uses `Kmax`).
    public var positive: [Bool]
    /// `ŝ[h][p]`: approximate page logits per query head of the group (split from the flat buffer only when
    /// asked: the decode step does not need the copies).
    public var pageScores: [[Float]] {
        let pages = pageProbabilities.count
        return temperatures.indices.map { Array(pageScoreRows[($0 * pages)..<(($0 + 1) * pages)]) }
    }
    /// `ŝ` as computed, `[head][page]`.
    var pageScoreRows: [Float]
    /// `τ_h` per query head.
    public var temperatures: [Float]
    /// `ω` per page: the group-mean per-token probability of each page's tokens.
    public var pageProbabilities: [Float]
    /// The best pages by descending `ω` (then lower page first): as many as `k2` tokens can need.
    public var pageOrder: [Int]
}

/// Hybrid Sparse Attention, stage 2 of RocketKV (ROCKETKV.md §4.3), for one KV group.
public enum HSA {
    /// Chooses the slots to attend for the group's queries `[groupSize][headDim]` (post-RoPE) over the slots
    /// described by `metadata` (already updated with the current token, §4.2).
    ///
    /// Softmax and group mean are computed per page with page token counts (§14), in F32; ties rank the lower
    /// dimension / page first.
    public static func select(queries: UnsafePointer<Float>, groupSize G: Int, metadata: PageMetadata,
                              k1: Int, k2: Int) -> HSASelection {
        let step = HSAGroupStep(groupSize: G, headDim: metadata.headDim)
        step.prepare(queries: queries, metadata: metadata, k1: k1)
        step.scorePages(part: 0, of: 1)
        for h in 0..<G { step.softmaxHead(h) }
        step.rank(metadata: metadata, k2: k2)
        return step.selection
    }

    /// Exact attention of the group's query heads over the selected slots of `stream` (§4.3 step 10), in
    /// llama.cpp's decode arithmetic: the rows gathered once, then `Attention.gathered`, as the decode step does.
    public static func attend(queries: UnsafePointer<Float>, groupSize G: Int, stream: KVStream, slots: [Int32],
                              scale: Float, output: UnsafeMutablePointer<Float>) {
        slots.withUnsafeBufferPointer { s in
            Attention.sparseGroup(queries: queries, heads: G, stream: stream, slots: s, scale: scale, output: output,
                                  batched: usesBatchedOrder(headDim: stream.headDim))
        }
    }

    /// The single-token summation order needs rows of a multiple of 32 values; the batched one serves otherwise.
    static func usesBatchedOrder(headDim d: Int) -> Bool { d % 32 != 0 }

    /// Bytes HSA reads for one group in one step (§7.2): `k1·n_pg` metadata values plus a key and a value row
    /// of `kvType` per attended slot.
    public static func bytesRead(k1: Int, pages: Int, metadataBytes: Int = 2, attended: Int, headDim d: Int,
                                 kvType: KVCacheType = .f16) -> Int {
        k1 * pages * metadataBytes + attended * kvType.rowPairBytes(headDim: d)
    }
}

/// HSA for one KV group split into steps that different threads can run (and buffers reused from step to
/// step): `prepare` (dimensions, signs, temperatures), `scorePages` per part of the pages (page logits),
/// `softmaxHead` per query head (page probabilities), `rank` (group mean, top pages, the selected rows
/// gathered), `attendHead` per query head.
// @unchecked: unsynchronized; `HSALayerStep.run` orders the steps (runPhases) so that the tasks running at
// the same time on one group write disjoint parts of its buffers (a part of the page scores, a head's rows).
final class HSAGroupStep: @unchecked Sendable {
    let groupSize: Int
    let headDim: Int
    /// The row types of the streams attended.
    let kvType: KVCacheType
    private(set) var dimCount = 0
    private(set) var pages = 0
    private(set) var slotCount = 0
    private var pageCapacity = 0, slotCapacity = 0, pageSize = 1, lastPageTokens = 0
    /// The metadata when it is `.f32` (tests): its strips are read directly.
    private var f32Metadata: PageMetadata?
    /// `I1` (k1 entries), their signs, and the coefficients `q[h][dim]` as `[rank][head]`.
    private let dims: UnsafeMutablePointer<Int32>
    private let positive: UnsafeMutablePointer<Bool>
    private let coefficients: UnsafeMutablePointer<Float>
    /// The strips read (f16 or int8 values) and, for `.q8` metadata, their scales (`nil` for f16).
    private let strips: UnsafeMutablePointer<UnsafeRawPointer?>
    private let stripScales: UnsafeMutablePointer<Float>
    private var scaled = false
    private let temperatures: UnsafeMutablePointer<Float>
    /// `[head][page]` logits `ŝ` and per-head probabilities (already divided by the head's sum and G).
    private var scores: UnsafeMutablePointer<Float>
    private var probabilities: UnsafeMutablePointer<Float>
    private var omega: UnsafeMutablePointer<Float>
    private var order: UnsafeMutablePointer<Int32>
    private var orderCount = 0
    private var slots: UnsafeMutablePointer<Int32>
    /// The selected rows' keys then values, gathered once for all heads.
    private var rows: UnsafeMutableRawPointer

    init(groupSize: Int, headDim: Int, kvType: KVCacheType = .f16) {
        self.groupSize = groupSize
        self.headDim = headDim
        self.kvType = kvType
        dims = .allocate(capacity: headDim)
        positive = .allocate(capacity: headDim)
        coefficients = .allocate(capacity: groupSize * headDim)
        strips = .allocate(capacity: headDim)
        stripScales = .allocate(capacity: headDim)
        temperatures = .allocate(capacity: groupSize)
        scores = .allocate(capacity: 1)
        probabilities = .allocate(capacity: 1)
        omega = .allocate(capacity: 1)
        order = .allocate(capacity: 1)
        slots = .allocate(capacity: 1)
        rows = .allocate(byteCount: 1, alignment: 64)
    }

    deinit {
        for p in [dims, order, slots] as [UnsafeMutablePointer<Int32>] { p.deallocate() }
        for p in [coefficients, stripScales, temperatures, scores, probabilities, omega] { p.deallocate() }
        positive.deallocate()
        strips.deallocate()
        rows.deallocate()
    }

    /// Steps 1–2 and the temperatures of step 5, and room for the metadata's pages.
    func prepare(queries: UnsafePointer<Float>, metadata: PageMetadata, k1: Int) {
        let G = groupSize, d = headDim
        pages = metadata.pages
        if pages > pageCapacity {
            pageCapacity = max(pages, 2 * pageCapacity)
            for buffer in [scores, probabilities] { buffer.deallocate() }
            scores = .allocate(capacity: G * pageCapacity)
            probabilities = .allocate(capacity: G * pageCapacity)
            omega.deallocate(); omega = .allocate(capacity: pageCapacity)
            order.deallocate(); order = .allocate(capacity: pageCapacity)
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * d) { buffer in
            let a = buffer.baseAddress!, sum = a + d
            a.initialize(repeating: 0, count: 2 * d)
            for h in 0..<G {
                let q = queries + h * d
                for i in 0..<d { a[i] += abs(q[i]); sum[i] += q[i] }
            }
            dimCount = Int(rk_top_indices(a, Int32(d), Int32(min(max(1, k1), d)), dims))
            for r in 0..<dimCount { positive[r] = sum[Int(dims[r])] > 0 }
        }
        for h in 0..<G {
            let q = queries + h * d
            var selected: Float = 0, total: Float = 0
            for r in 0..<dimCount {
                coefficients[r * G + h] = q[Int(dims[r])]
                selected += abs(q[Int(dims[r])])
            }
            for i in 0..<d { total += abs(q[i]) }
            temperatures[h] = total > 0 ? (Float(d) * selected / total).squareRoot() : Float(d).squareRoot()
        }
        pageSize = metadata.pageSize
        lastPageTokens = pages == 0 ? 0 : metadata.tokens(inPage: pages - 1)
        f32Metadata = nil
        scaled = metadata.precision == .q8
        switch metadata.precision {
        case .f16:
            for r in 0..<dimCount { strips[r] = UnsafeRawPointer(metadata.halfStrip(dim: Int(dims[r]), max: positive[r])) }
        case .q8:
            for r in 0..<dimCount {
                let strip = metadata.byteStrip(dim: Int(dims[r]), max: positive[r])
                strips[r] = UnsafeRawPointer(strip.values)
                stripScales[r] = strip.scale
            }
        case .f32:
            f32Metadata = metadata
        }
    }

    /// Steps 3–4 for part `part` of `parts` of the pages (page logits of every head from the sign-selected
    /// strips, accumulated over the dimensions in rank order; each strip is read once for the whole group).
    func scorePages(part: Int, of parts: Int) {
        let G = groupSize
        // Parts start on multiples of 8 pages, the kernel's vector width.
        let p0 = min(pages, (pages * part / parts + 7) / 8 * 8), p1 = part + 1 == parts ? pages : min(pages, (pages * (part + 1) / parts + 7) / 8 * 8)
        guard p0 < p1 else { return }
        for h in 0..<G { (scores + h * pages + p0).initialize(repeating: 0, count: p1 - p0) }
        if let f32 = f32Metadata {
            for r in 0..<dimCount {
                let strip = f32.strip(dim: Int(dims[r]), max: positive[r])
                for h in 0..<G {
                    let row = scores + h * pages, qi = coefficients[r * G + h]
                    for p in p0..<p1 { row[p] += qi * strip[p] }
                }
            }
        } else {
            rk_strip_scores(strips, scaled ? UnsafePointer(stripScales) : nil, Int32(dimCount), coefficients, Int32(G), scores, pages,
                            Int32(p0), Int32(p1))
        }
    }

    /// Steps 6–7 for head `h`: its per-token softmax computed per page, divided by G for the group mean.
    func softmaxHead(_ h: Int) {
        rk_hsa_page_probabilities(scores + h * pages, Int32(pages), 1 / temperatures[h], Int32(pageSize), Int32(lastPageTokens),
                                  Int32(groupSize), probabilities + h * pages)
    }

    /// Step 8 (the group mean, summed over heads in order) and step 9: whole pages by score, then the lowest
    /// slots of a partially taken page (§16.2). Only the best ⌈k2/P⌉ + 1 pages can be needed (one more in case
    /// the last, partial page is among them). `slotMap` maps metadata slots to stream slots; with a `stream`,
    /// the selected keys and values are gathered for `attendHead`.
    func rank(metadata: PageMetadata, k2: Int, slotMap: UnsafePointer<Int32>? = nil, stream: KVStream? = nil) {
        let G = groupSize, P = metadata.pageSize, want = min(k2, metadata.tokens)
        // Per page 0 + head 0 + head 1 + …, as the reference sums it; heads outer so the page loop vectorizes.
        omega.initialize(repeating: 0, count: pages)
        for h in 0..<G {
            let row = probabilities + h * pages
            for p in 0..<pages { omega[p] += row[p] }
        }
        orderCount = Int(rk_top_indices(omega, Int32(pages), Int32(min(pages, (want + P - 1) / P + 1)), order))
        if want > slotCapacity {
            slotCapacity = max(want, 2 * slotCapacity)
            slots.deallocate(); slots = .allocate(capacity: slotCapacity)
            rows.deallocate(); rows = .allocate(byteCount: slotCapacity * kvType.rowPairBytes(headDim: headDim), alignment: 64)
        }
        slotCount = 0
        for o in 0..<orderCount where slotCount < want {
            let p = Int(order[o]), first = p * P
            for s in first..<(first + min(metadata.tokens(inPage: p), want - slotCount)) {
                slots[slotCount] = slotMap.map { $0[s] } ?? Int32(s)
                slotCount += 1
            }
        }
        if let stream {
            precondition(stream.kvType == kvType)
            Attention.gather(stream, slots: slots, count: slotCount, into: rows)
        }
    }

    /// Step 10 for head `h`: exact attention over the rows `rank` gathered (llama.cpp's decode arithmetic).
    func attendHead(_ h: Int, queries: UnsafePointer<Float>, scale: Float, output: UnsafeMutablePointer<Float>) {
        Attention.gathered(queries: queries + h * headDim, heads: 1, rows: rows, kvType: kvType, count: slotCount, headDim: headDim, scale: scale,
                           output: output + h * headDim, batched: HSA.usesBatchedOrder(headDim: headDim))
    }

    /// Bytes read by the step (§7.2).
    func bytesRead(metadata: PageMetadata) -> Int {
        HSA.bytesRead(k1: dimCount, pages: pages, metadataBytes: metadata.elementBytes, attended: slotCount, headDim: headDim, kvType: kvType)
    }

    /// The decisions and intermediate values as arrays.
    var selection: HSASelection {
        HSASelection(slots: Array(UnsafeBufferPointer(start: slots, count: slotCount)),
                     dims: (0..<dimCount).map { Int(dims[$0]) },
                     positive: Array(UnsafeBufferPointer(start: positive, count: dimCount)),
                     pageScoreRows: Array(UnsafeBufferPointer(start: scores, count: groupSize * pages)),
                     temperatures: Array(UnsafeBufferPointer(start: temperatures, count: groupSize)),
                     pageProbabilities: Array(UnsafeBufferPointer(start: omega, count: pages)),
                     pageOrder: (0..<orderCount).map { Int(order[$0]) })
    }
}

/// The HSA decode step of one layer for every KV group, as phased tasks the pool's threads claim in order so
/// that the work spreads evenly (3 KV groups on 2 threads would leave one thread idle a third of the time):
/// per group, `prepare`, then `scorePages` in parts, then every head's `softmaxHead`, then `rank`, then every
/// head's `attendHead` (`ThreadPool.runPhases`).
final class HSALayerStep {
    let shape: AttentionShape
    /// Page logits are computed in this many parts per group.
    let scoreParts = 2
    private let groups: [HSAGroupStep]

    init(shape: AttentionShape) {
        self.shape = shape
        groups = (0..<shape.kvHeads).map { _ in HSAGroupStep(groupSize: shape.groupSize, headDim: shape.headDim, kvType: shape.kvType) }
    }

    /// Runs the step for the layer's `streams` and `metadata`; `update(g)` brings group g's metadata up to date
    /// with the decode token first (in the group's first task, so the groups' updates run in parallel).
    /// `slotMaps[g]`, when given, maps metadata slots to stream slots (RocketKV-MT's index list into the full
    /// cache). Returns the bytes read.
    func run(_ input: AttentionInput, streams: [KVStream], metadata: [PageMetadata], slotMaps: [[Int32]]?, k1: Int, k2: Int,
             output: UnsafeMutablePointer<Float>, update: @Sendable (Int) -> Void) -> Int {
        let G = shape.groupSize, d = shape.headDim
        let shape = shape, scoreParts = scoreParts, groups = groups
        nonisolated(unsafe) let output = output   // each head's task writes its own row
        @Sendable func task(_ g: Int, _ phase: Int, _ index: Int) {
            switch phase {
            case 0:
                update(g)
                groups[g].prepare(queries: input.queries + g * G * d, metadata: metadata[g], k1: k1)
            case 1:
                groups[g].scorePages(part: index, of: scoreParts)
            case 2:
                groups[g].softmaxHead(index)
            case 3:
                if let map = slotMaps?[g] {
                    map.withUnsafeBufferPointer { groups[g].rank(metadata: metadata[g], k2: k2, slotMap: $0.baseAddress, stream: streams[g]) }
                } else {
                    groups[g].rank(metadata: metadata[g], k2: k2, stream: streams[g])
                }
            default:
                groups[g].attendHead(index, queries: input.queries + g * G * d, scale: shape.scale, output: output + g * G * d)
            }
        }
        ThreadPool.runPhases(groups: shape.kvHeads, phases: [1, scoreParts, G, 1, G]) { g, phase, index in
            StepProfile.measure(work: phase == 4 ? .hsaAttention : .hsaSelection) { task(g, phase, index) }
        }
        return zip(groups, metadata).reduce(0) { $0 + $1.0.bytesRead(metadata: $1.1) }
    }
}
