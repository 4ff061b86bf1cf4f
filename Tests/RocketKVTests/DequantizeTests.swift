import XCTest
import RocketKV
import TestSupport

/// Parses a hex string into bytes.
func bytes(hex: String) -> [UInt8] {
    let utf8 = Array(hex.utf8)
    precondition(utf8.count % 2 == 0)
    func nibble(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: preconditionFailure("not hex")
        }
    }
    return stride(from: 0, to: utf8.count, by: 2).map { nibble(utf8[$0]) << 4 | nibble(utf8[$0 + 1]) }
}

/// Parses hex of little-endian Float32 values.
func floats(hex: String) -> [Float] {
    let b = bytes(hex: hex)
    return stride(from: 0, to: b.count, by: 4).map {
        Float(bitPattern: UInt32(b[$0]) | UInt32(b[$0 + 1]) << 8 | UInt32(b[$0 + 2]) << 16 | UInt32(b[$0 + 3]) << 24)
    }
}

private func dequantized(_ type: GGMLType, _ raw: [UInt8], count: Int, offset: Int = 0) -> [Float] {
    // Copy to an odd offset so unaligned field access is exercised.
    var storage = [UInt8](repeating: 0xEE, count: raw.count + offset)
    storage.replaceSubrange(offset..<offset + raw.count, with: raw)
    return storage.withUnsafeBytes { dequantize(type, from: $0.baseAddress! + offset, count: count) }
}

final class DequantizeTests: XCTestCase {
    func testBlockLayoutsMatchGGML() {
        // (block size, bytes per block) from ggml-common.h.
        let expected: [GGMLType: (Int, Int)] = [
            .f32: (1, 4), .f16: (1, 2), .bf16: (1, 2), .q4_0: (32, 18), .q4_1: (32, 20), .q5_0: (32, 22),
            .q5_1: (32, 24), .q8_0: (32, 34), .q8_1: (32, 36), .q2_K: (256, 84), .q3_K: (256, 110),
            .q4_K: (256, 144), .q5_K: (256, 176), .q6_K: (256, 210), .q8_K: (256, 292),
        ]
        let ids: [GGMLType: UInt32] = [
            .f32: 0, .f16: 1, .q4_0: 2, .q4_1: 3, .q5_0: 6, .q5_1: 7, .q8_0: 8, .q8_1: 9, .q2_K: 10,
            .q3_K: 11, .q4_K: 12, .q5_K: 13, .q6_K: 14, .q8_K: 15, .bf16: 30,
        ]
        XCTAssertEqual(expected.count, GGMLType.allCases.count)
        for type in GGMLType.allCases {
            XCTAssertEqual(type.blockSize, expected[type]?.0, "\(type)")
            XCTAssertEqual(type.bytesPerBlock, expected[type]?.1, "\(type)")
            XCTAssertEqual(type.rawValue, ids[type], "\(type)")
        }
        XCTAssertEqual(GGMLType.q4_K.name, "Q4_K")
        XCTAssertEqual(GGMLType.bf16.name, "BF16")
    }

    /// Known blocks for every type: bit-identical to gguf-py's numpy reference.
    func testKnownBlocksMatchReference() {
        let covered = Set(ReferenceVectors.known.map(\.type))
        XCTAssertEqual(covered, Set(GGMLType.allCases), "every type has reference vectors")
        for vector in ReferenceVectors.known {
            let raw = bytes(hex: vector.blocks)
            XCTAssertEqual(raw.count, vector.type.byteCount(elements: vector.count), "\(vector.type)")
            let expected = floats(hex: vector.expected)
            XCTAssertEqual(expected.count, vector.count)
            for offset in [0, 1] {
                let actual = dequantized(vector.type, raw, count: vector.count, offset: offset)
                for i in 0..<vector.count where actual[i].bitPattern != expected[i].bitPattern {
                    XCTFail("\(vector.type) element \(i): got \(actual[i]) (0x\(String(actual[i].bitPattern, radix: 16))), expected \(expected[i]) (0x\(String(expected[i].bitPattern, radix: 16)))")
                    break
                }
            }
        }
    }

    /// A random vector quantized by gguf-py: same dequantization, and close to the original.
    func testRoundTripOfReferenceQuantization() {
        // Bound on |dequantized - original| as a fraction of max |original| for each type.
        let tolerance: [GGMLType: Float] = [
            .f16: 1e-3, .bf16: 8e-3, .q4_0: 1.0 / 8, .q4_1: 1.0 / 15, .q5_0: 1.0 / 16, .q5_1: 1.0 / 31, .q8_0: 1.0 / 127,
        ]
        XCTAssertEqual(Set(ReferenceVectors.roundTrips.map(\.type)), Set(tolerance.keys))
        for vector in ReferenceVectors.roundTrips {
            let original = floats(hex: vector.original)
            let expected = floats(hex: vector.expected)
            let actual = dequantized(vector.type, bytes(hex: vector.blocks), count: vector.count)
            XCTAssertEqual(actual.map(\.bitPattern), expected.map(\.bitPattern), "\(vector.type)")
            let scale = original.map(abs).max()!
            let worst = zip(actual, original).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, tolerance[vector.type]! * scale * 1.01, "\(vector.type)")
        }
    }

    func testHalfConversionIsExactForEveryBitPattern() {
        #if arch(x86_64) || arch(arm64)
        #if !(os(macOS) && arch(x86_64))
        for bits in 0...UInt16.max {
            let ours = floatFromHalf(bits)
            let native = Float(Float16(bitPattern: bits))
            if native.isNaN {
                XCTAssertTrue(ours.isNaN, "0x\(String(bits, radix: 16))")
            } else {
                XCTAssertEqual(ours.bitPattern, native.bitPattern, "0x\(String(bits, radix: 16))")
            }
        }
        #endif
        #endif
        XCTAssertEqual(floatFromHalf(0x0001), 0x1p-24)
        XCTAssertEqual(floatFromHalf(0x8000).bitPattern, (-Float(0)).bitPattern)
        XCTAssertEqual(floatFromHalf(0x7BFF), 65504)
        XCTAssertEqual(floatFromHalf(0xFC00), -.infinity)
        XCTAssertEqual(floatFromBFloat16(0x3F80), 1)
        XCTAssertEqual(floatFromBFloat16(0xC020), -2.5)
    }

    /// Hand-checked values: pins the element order independently of the generated vectors.
    func testHandBuiltBlocks() {
        // Q4_0, d = 1.0 (0x3C00): byte j = low nibble j%16, high nibble 15 - j%16.
        var q4 = [UInt8]([0x00, 0x3C])
        for j in 0..<16 { q4.append(UInt8(j) | UInt8(15 - j) << 4) }
        let y = dequantized(.q4_0, q4, count: 32)
        XCTAssertEqual(Array(y[0..<16]), (0..<16).map { Float($0 - 8) })
        XCTAssertEqual(Array(y[16..<32]), (0..<16).map { Float(7 - $0) })

        // Q8_0, d = 0.5 (0x3800): qs = -16...15.
        var q8 = [UInt8]([0x00, 0x38])
        for j in 0..<32 { q8.append(UInt8(bitPattern: Int8(j - 16))) }
        XCTAssertEqual(dequantized(.q8_0, q8, count: 32), (0..<32).map { Float($0 - 16) * 0.5 })

        // Q5_0, d = 1: nibbles 0, qh bit i set for odd i: element i = (i odd ? 16 : 0) - 16.
        var q5 = [UInt8]([0x00, 0x3C, 0xAA, 0xAA, 0xAA, 0xAA])
        q5 += [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(dequantized(.q5_0, q5, count: 32), (0..<32).map { $0 % 2 == 1 ? 0 : -16 })

        // Q4_K, d = 1, dmin = 1, sub-block s has scale s+1 and min s (and for s >= 4 via the packed bytes).
        var scales = [UInt8](repeating: 0, count: 12)
        for s in 0..<4 { scales[s] = UInt8(s + 1); scales[s + 4] = UInt8(s) }
        for s in 4..<8 { scales[s + 4] = UInt8(s + 1) | UInt8(s) << 4 }
        var q4k = [UInt8]([0x00, 0x3C, 0x00, 0x3C]) + scales
        q4k += [UInt8](repeating: 0x53, count: 128)  // low nibble 3, high nibble 5
        let k = dequantized(.q4_K, q4k, count: 256)
        for i in 0..<256 {
            let s = i / 32
            let q: Float = s % 2 == 0 ? 3 : 5
            XCTAssertEqual(k[i], Float(s + 1) * q - Float(s), "element \(i)")
        }
    }

    func testRowAndTensorHelpers() throws {
        // A GGUF file with a 2-row Q8_0 tensor: row r = d (1.0) * (j - 16 + r).
        var data: [UInt8] = []
        for r in 0..<2 {
            data += [0x00, 0x3C]
            for j in 0..<32 { data.append(UInt8(bitPattern: Int8(j - 16 + r))) }
        }
        var writer = TestGGUFWriter()
        writer.addTensor("t", shape: [32, 2], type: .q8_0, data: data)
        let file = try GGUFFile(bytes: writer.build())
        let t = try XCTUnwrap(file.tensor(named: "t"))
        var row = [Float](repeating: 0, count: 32)
        row.withUnsafeMutableBufferPointer { dequantizeRow(1, of: t, in: file, into: $0) }
        XCTAssertEqual(row, (0..<32).map { Float($0 - 15) })
        let all = dequantizeTensor(t, in: file)
        XCTAssertEqual(all.count, 64)
        XCTAssertEqual(Array(all[32...]), row)
        XCTAssertEqual(all[0], -16)
    }
}
