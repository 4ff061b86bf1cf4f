import Foundation
import RocketKV
import XCTest

// DIAGNOSTIC (run as a temporary test, not committed under Tests/): would Gemma 3's sliding-window layers' queries
// help stage 1 find the needle? Each layer's last-32 window queries vote (SnapKV scoring, the group's 4 heads,
// κ = 63) over that layer's keys of the WHOLE prompt (kept here by replaying the dense prefill into a full cache
// on every layer, which the real sliding layers do not keep), and keep B_p = 1,093 of 4,095 tokens as rocket @256
// does at 4K. Printed per layer: needle tokens kept / needle tokens, and the needle's best rank by pooled vote.
final class ZZStageOneAllLayersDiagTests: XCTestCase {
    final class WindowTap: KVPolicy {
        let inner: KVPolicy, layers: [LayerAttention]
        var window: [Int: [Float]] = [:]
        init(_ inner: KVPolicy, layers: [LayerAttention]) { self.inner = inner; self.layers = layers }
        func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
            let row = layers[layer].queryHeads * layers[layer].headDim
            window[layer, default: []] += Array(UnsafeBufferPointer(start: input.queries, count: input.tokens * row))
            window[layer] = Array(window[layer]!.suffix(32 * row))
            inner.prefill(layer: layer, input, output: output)
        }
        func finishPrefill() { inner.finishPrefill() }
        func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) { inner.decode(layer: layer, input, output: output) }
        var statistics: KVStatistics { inner.statistics }
    }

    func testSlidingLayersVotes() throws {
        let file = TestModel.gemmaFile
        let tokenizer = try Tokenizer(gguf: file)
        let engine = Engine(model: try loadModel(file: file))
        let layers = engine.model.config.layerAttention
        let everyLayerGlobal = layers.map { var l = $0; l.kind = .global; return l }
        let haystack = try Haystack.paulGraham()
        for (depth, key) in [(0.25, "9677326"), (0.5, "9971359"), (0.75, "5253485")] {
            let prompt = Passkey.prompt(haystack: haystack, tokens: 4096, depth: depth, key: key, tokenizer: tokenizer)
            let tokens = Array(prompt.tokens.dropLast())
            let before = prompt.text.components(separatedBy: Passkey.needle(key: key))[0]
            let start = tokenizer.encode(before, addSpecial: true, parseSpecial: false).count
            let needle = start..<(start + tokenizer.encode(Passkey.needle(key: key), addSpecial: false, parseSpecial: false).count)
            let snapshot = try engine.prefillSnapshot(tokens)
            let full = try KVMethods.make("full", context: KVMethodContext(layers: everyLayerGlobal, budget: nil, promptLength: tokens.count, maxNewTokens: 0))
            let tap = WindowTap(full, layers: layers)
            snapshot.replay(into: tap)
            let streams = (full as! KVStreamInspectable).inspectableStreams   // one KV head per layer
            var total = [Float](repeating: 0, count: tokens.count - 32)
            var lines: [String] = []
            for (l, layer) in layers.enumerated() {
                let stream = streams[l], d = layer.headDim, n = stream.count
                var keys = [Float](repeating: 0, count: n * d)
                keys.withUnsafeMutableBufferPointer { b in for j in 0..<n { stream.key(j, into: b.baseAddress! + j * d) } }
                let q = tap.window[l]!
                let votes = q.withUnsafeBufferPointer { qb in keys.withUnsafeBufferPointer { kb in
                    SnapKVScoring.votes(windowQueries: qb.baseAddress!, windowRows: 32, groupSize: layer.queryHeads, keys: .f32(kb.baseAddress!),
                                        count: n, headDim: d, scale: layer.scale)
                } }
                for j in votes.indices { total[j] += votes[j] }
                lines.append(describe(votes, layer: "\(l) \(layer.kind == .global ? "global" : "sliding")", needle: needle, n: n))
            }
            print("DIAG depth \(depth) needle \(needle)\n" + lines.joined(separator: "\n"))
            print(describe(total, layer: "all 18 summed", needle: needle, n: tokens.count))
        }
    }

    func describe(_ votes: [Float], layer: String, needle: Range<Int>, n: Int) -> String {
        let pooled = SnapKVScoring.maxPool(votes, kernel: 63)
        let kept = Set(SnapKVScoring.select(votes: votes, count: n, promptBudget: 1093, kernel: 63).slots)
        let order = pooled.indices.sorted { pooled[$0] != pooled[$1] ? pooled[$0] > pooled[$1] : $0 < $1 }
        let rank = order.firstIndex { needle.contains($0) } ?? -1
        return "DIAG   layer \(layer): needle kept \(needle.filter(kept.contains).count)/\(needle.count), best needle rank \(rank)"
    }
}
