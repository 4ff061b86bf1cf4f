// Where HSA's selection time goes, phase by phase, on one thread: SmolLM2's shape at 16K @256 (90 KV heads = 30
// layers × 3 groups of 3 query heads, d = 64; stage 1 kept C = 1,595 slots; P = 3, k1 = 30, k2 = 128), each KV head
// with its own stream and page bounds so that, as in a real step, they do not all fit in the caches (~49 MB).
// Run: cp results/hsa-selection-2026-12-03/hsa-phase-probe.swift Tests/RocketKVTests/ZZHSAPhaseProbe.swift
//      swift test -c release --filter ZZHSAPhaseProbe | grep '^PHASE' > results/hsa-selection-2026-12-03/hsa-phase-probe.txt
import XCTest
@testable import RocketKV

final class ZZHSAPhaseProbe: XCTestCase {
    func testPhases() {
        let heads = 90, G = 3, d = 64, C = 1595, P = 3, k1 = 30, k2 = 128, steps = 40
        var rng = SystemRandomNumberGenerator()
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &rng) } }
        let streams = (0..<heads).map { _ in KVStream(headDim: d) }
        let metadata = (0..<heads).map { _ in PageMetadata(headDim: d, pageSize: P, precision: .f16) }
        for h in 0..<heads {
            let k = random(C * d), v = random(C * d)
            for t in 0..<C {
                streams[h].append(key: k.withUnsafeBufferPointer { $0.baseAddress! + t * d },
                                  value: v.withUnsafeBufferPointer { $0.baseAddress! + t * d }, position: t)
                metadata[h].append(slot: t, of: streams[h])
            }
        }
        let groups = (0..<heads).map { _ in HSAGroupStep(groupSize: G, headDim: d) }
        var out = [Float](repeating: 0, count: G * d)
        var time = [UInt64](repeating: 0, count: 7)
        let names = ["append", "prepare", "scorePages", "softmax", "rank+gather", "attend", "total"]
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        for step in 0..<steps {
            let q = random(G * d), k = random(d), v = random(d)
            for h in 0..<heads {
                var t = now()
                func lap(_ i: Int) { let n = now(); if step > 0 { time[i] += n - t }; t = n }
                k.withUnsafeBufferPointer { kp in
                    v.withUnsafeBufferPointer { vp in
                        streams[h].append(key: kp.baseAddress!, value: vp.baseAddress!, position: C + step)
                    }
                }
                metadata[h].append(slot: streams[h].count - 1, of: streams[h]); lap(0)
                q.withUnsafeBufferPointer { qp in groups[h].prepare(queries: qp.baseAddress!, metadata: metadata[h], k1: k1) }; lap(1)
                groups[h].scorePages(part: 0, of: 1); lap(2)
                for i in 0..<G { groups[h].softmaxHead(i) }; lap(3)
                groups[h].rank(metadata: metadata[h], k2: k2, stream: streams[h]); lap(4)
                q.withUnsafeBufferPointer { qp in
                    out.withUnsafeMutableBufferPointer { o in
                        for i in 0..<G { groups[h].attendHead(i, queries: qp.baseAddress!, scale: 0.125, output: o.baseAddress!) }
                    }
                }
                lap(5)
            }
        }
        time[6] = time[0..<6].reduce(0, +)
        print("PHASE phase microseconds_per_step(all 90 KV heads, one thread) microseconds_per_KV_head")
        for i in 0..<7 {
            let perStep = Double(time[i]) / Double(steps - 1) / 1000
            print(String(format: "PHASE %@ %.1f %.2f", names[i], perStep, perStep / Double(heads)))
        }
    }
}
