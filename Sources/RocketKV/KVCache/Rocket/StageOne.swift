/// Whose window votes decide what RocketKV's stage 1 keeps in a layer.
public enum StageOneVotes: String, Sendable, CaseIterable {
    /// Each layer its own window's votes (§3, the paper).
    case layer
    /// The votes of every layer the method serves, summed by token position: one kept set per KV group for
    /// all of them (project decision, the default on a hybrid model's global layers, EVALUATION.md). On
    /// Gemma 3's three global layers the first one's window finds a needle the deeper ones' windows miss; on
    /// SmolLM2's 30 layers the sum drowns the few layers that find it, so there each layer keeps its own.
    case shared
}

/// RocketKV's stage 1 (§3) for every layer and KV group of a store, the selection `rocket` and `rocket-mt`
/// apply (by eviction, or as the filtered set `R`).
enum StageOne {
    /// The slots each `(layer, group)` keeps, at index `layer · kvHeads + group`, in cache order; nil where
    /// nothing is evicted (the stream fits `B_p`, or the turn recorded no query).
    static func keptSlots(store: KVStore, window: QueryWindow, plan: RocketPlan) -> [[Int]?] {
        let shape = store.shape, units = shape.layers * shape.kvHeads
        let streams = (0..<units).map { store.streams[$0 / shape.kvHeads][$0 % shape.kvHeads] }
        var votes = [[Float]?](repeating: nil, count: units)
        votes.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let out = out.baseAddress!   // each unit writes its own element
            ThreadPool.parallelFor(units) { range in
                for unit in range {
                    let g = unit % shape.kvHeads
                    out[unit] = window.votes(layer: unit / shape.kvHeads, heads: (g * shape.groupSize)..<((g + 1) * shape.groupSize),
                                             stream: streams[unit], scale: shape.scale, promptBudget: plan.promptBudget)
                }
            }
        }
        if plan.votes == .shared { votes = sharedVotes(votes, streams: streams, kvHeads: shape.kvHeads) }
        return (0..<units).map { unit in
            votes[unit].map { SnapKVScoring.select(votes: $0, count: streams[unit].count, promptBudget: plan.promptBudget, kernel: plan.kernel).slots }
        }
    }

    /// Each unit's prefix votes replaced by the sum, over the units of its KV group in every layer, of the
    /// votes given to the token at the same position.
    private static func sharedVotes(_ votes: [[Float]?], streams: [KVStream], kvHeads: Int) -> [[Float]?] {
        var totals = [[Float]](repeating: [], count: kvHeads)
        for (unit, unitVotes) in votes.enumerated() {
            guard let unitVotes else { continue }
            let positions = streams[unit].positions, g = unit % kvHeads
            for (j, v) in unitVotes.enumerated() {
                let p = Int(positions[j])
                if p >= totals[g].count { totals[g] += [Float](repeating: 0, count: p + 1 - totals[g].count) }
                totals[g][p] += v
            }
        }
        return votes.enumerated().map { unit, unitVotes in
            unitVotes.map { v in
                let positions = streams[unit].positions, total = totals[unit % kvHeads]
                return (0..<v.count).map { total[Int(positions[$0])] }
            }
        }
    }
}
