import Foundation
import RocketKV
import XCTest

// TEMPORARY diagnostic (not committed): does rocket's stage 1 keep the needle on Gemma 3?
final class ZZStageOneDiagTests: XCTestCase {
    func testStageOneKeepsNeedle() throws {
        let file = TestModel.gemmaFile
        let tokenizer = try Tokenizer(gguf: file)
        let engine = Engine(model: try loadModel(file: file))
        let c = engine.model.config
        let haystack = try Haystack.paulGraham()
        for (depth, key) in [(0.25, "9677326"), (0.5, "9971359")] {
            let prompt = Passkey.prompt(haystack: haystack, tokens: 4096, depth: depth, key: key, tokenizer: tokenizer)
            let tokens = Array(prompt.tokens.dropLast())
            // needle token span: find the key digits' tokens by decoding prefixes
            let needleText = Passkey.needle(key: key)
            let before = prompt.text.components(separatedBy: needleText)[0]
            let start = tokenizer.encode(before, addSpecial: true, parseSpecial: false).count
            let span = start..<(start + tokenizer.encode(needleText, addSpecial: false, parseSpecial: false).count)
            let snapshot = try engine.prefillSnapshot(tokens)
            for name in ["rocket", "snapkv"] {
                let policy = try KVMethods.make(name, context: KVMethodContext(layers: c.layerAttention, budget: 256, promptLength: tokens.count, maxNewTokens: 128))
                snapshot.replay(into: policy)
                let layered = policy as! LayeredKV
                let method = layered.caches.first { !($0 is SlidingWindowKV) } as! KVStreamInspectable
                var report: [String] = []
                for stream in method.inspectableStreams {
                    let kept = Set((0..<stream.count).map { Int(stream.positions[$0]) })
                    report.append("\(span.filter(kept.contains).count)/\(span.count) of \(stream.count)")
                }
                print("DIAG depth \(depth) \(name) needle \(span): \(report.joined(separator: ", "))")
            }
        }
    }
}
