import Foundation
import RocketKV
import XCTest

/// A long prompt's prefill holds what the cache stores plus scratch that grows with the chunk, never a
/// prompt × prompt matrix: measured as the growth of the process's peak RSS (reset through
/// `/proc/self/clear_refs`) while each method prefills 8,192 tokens of the tiny Gemma 3 (one global layer of
/// 2 KV heads, head dim 32, so the whole cache is ~2 MB where one 8,192² f16 matrix would be 128 MB).
final class LongPrefillMemoryTests: XCTestCase {
    static let promptLength = 8192
    /// Thread stacks, the chunk's activations and logits, per-thread attention scratch (chunk rows × prompt).
    static let slack = 32 << 20

    func testPrefillPeakMemoryIsTheCachePlusChunkScratch() throws {
        let url = ModelStore.home.appendingPathComponent("tiny/gemma3.gguf")
        guard FileManager.default.fileExists(atPath: url.path) else {
            return XCTFail("\(url.path) is missing: run `python3 scripts/make_tiny_models.py --write-models` (.ci/run does it)")
        }
        guard PeakMemory.reset() else { throw XCTSkip("this system cannot reset the peak RSS (/proc/self/clear_refs)") }
        let engine = Engine(model: try loadModel(file: try GGUFFile(path: url.path)))
        let model = engine.model, c = model.config
        XCTAssertGreaterThanOrEqual(c.contextLength, Self.promptLength)
        let vocabulary = c.vocabularySize
        let prompt = (0..<Self.promptLength).map { ($0 * 7919 + 13) % vocabulary }
        for name in KVMethods.all.map(\.name) where name != "every-other" {
            let budget: Int? = try KVMethods.named(name).needsBudget ? 256 : nil
            let policy = try KVMethods.make(name, context: KVMethodContext(layers: c.layerAttention, budget: budget,
                                                                         promptLength: prompt.count, maxNewTokens: 8))
            let session = engine.session(policy: policy)
            var chunks = 0
            XCTAssert(PeakMemory.reset())
            let before = PeakMemory.peakBytes
            try session.prefill(prompt) { _, _ in chunks += 1 }
            let growth = PeakMemory.peakBytes - before
            XCTAssertEqual(chunks, Self.promptLength / session.chunkSize, "\(name): the prompt goes through in chunks")
            // Before `finishPrefill` evicts, every method held the whole prompt (with its metadata): allow that twice.
            let full = Self.promptLength * c.slidingLayers.filter { !$0 }.count * c.kvHeads * 4 * c.headDim
            XCTAssertLessThan(growth, 2 * full + Self.slack,
                              "\(name): prefill of \(Self.promptLength) tokens raised the peak RSS by \(growth >> 20) MiB")
        }
    }

    /// The peak RSS must react to a large allocation, or the test above proves nothing.
    func testPeakMemoryDetectsAPromptSquaredBuffer() throws {
        guard PeakMemory.reset() else { throw XCTSkip("this system cannot reset the peak RSS (/proc/self/clear_refs)") }
        let before = PeakMemory.peakBytes
        let n = Self.promptLength
        let square = UnsafeMutablePointer<UInt16>.allocate(capacity: n * n)   // one f16 score matrix: 128 MiB
        defer { square.deallocate() }
        square.initialize(repeating: 1, count: n * n)
        XCTAssertGreaterThan(PeakMemory.peakBytes - before, Self.slack + 2 * n * 1024)
    }
}

/// The process's peak resident set (Linux `VmHWM`), resettable to the current RSS.
enum PeakMemory {
    /// Resets the peak to the current RSS; false where the system does not allow it.
    static func reset() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        do { try handle.write(contentsOf: Data("5".utf8)) } catch { return false }
        return peakBytes > 0
    }

    /// `VmHWM` from /proc/self/status in bytes (0 where it is not there).
    static var peakBytes: Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kib * 1024
    }
}
