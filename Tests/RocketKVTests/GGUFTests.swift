import Foundation
import XCTest
import RocketKV
import TestSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Helpers

/// Asserts that parsing throws a GGUFError whose message contains `fragment`.
private func assertRejects(_ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try GGUFFile(bytes: bytes)
        XCTFail("accepted a malformed file (expected an error mentioning '\(fragment)')", file: file, line: line)
    } catch let error as GGUFError {
        XCTAssertTrue(error.description.contains(fragment), "error '\(error.description)' does not mention '\(fragment)'",
                      file: file, line: line)
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
    }
}

/// Every GGUF value type, including nested arrays.
private let allValues: [(String, GGUFValue)] = [
    ("t.u8", .uint8(200)), ("t.i8", .int8(-100)), ("t.u16", .uint16(60000)), ("t.i16", .int16(-30000)),
    ("t.u32", .uint32(4_000_000_000)), ("t.i32", .int32(-2_000_000_000)), ("t.f32", .float32(-1.5e-3)),
    ("t.bool.true", .bool(true)), ("t.bool.false", .bool(false)), ("t.string", .string("héllo, wörld ✓")),
    ("t.empty.string", .string("")),
    ("t.u64", .uint64(UInt64.max)), ("t.i64", .int64(Int64.min)), ("t.f64", .float64(3.141592653589793)),
    ("t.array.strings", .array([.string("a"), .string(""), .string("ccc")])),
    ("t.array.i32", .array([.int32(1), .int32(-2), .int32(3)])),
    ("t.array.f32", .array([.float32(0.25), .float32(-8)])),
    ("t.array.bool", .array([.bool(true), .bool(false)])),
    ("t.array.u64", .array([.uint64(1 << 63)])),
    ("t.array.empty", .array([])),
    ("t.array.nested", .array([.array([.int8(1), .int8(2)]), .array([.int8(-3)]), .array([])])),
    ("t.array.nested.strings", .array([.array([.string("x")]), .array([.string("y"), .string("z")])])),
    ("t.array.deep", .array([.array([.array([.array([.float64(-0.5)])])])])),
]

/// A small valid file with metadata of every type and tensors of several types.
private func sampleWriter(version: UInt32 = 3, alignment: Int? = nil) -> TestGGUFWriter {
    var w = TestGGUFWriter()
    w.version = version
    w.add("general.architecture", .string("llama"))
    if let alignment {
        w.add("general.alignment", .uint32(UInt32(alignment)))
        w.alignment = alignment
    }
    for (k, v) in allValues { w.add(k, v) }
    // F32 [3, 2]: 24 bytes, so the next tensor needs padding.
    w.addTensor("f32.weight", shape: [3, 2], type: .f32, data: (0..<6).flatMap { i -> [UInt8] in
        withUnsafeBytes(of: Float(i).bitPattern.littleEndian) { Array($0) }
    })
    w.addTensor("q8.weight", shape: [32, 1, 1, 2], type: .q8_0, data: (0..<68).map { UInt8($0 & 0xFF) })
    w.addTensor("q4k.weight", shape: [256], type: .q4_K, data: (0..<144).map { UInt8(255 - $0) })
    w.addTensor("f16.bias", shape: [5], type: .f16, data: [UInt8](repeating: 0x3C, count: 10))
    return w
}

// MARK: - Tests

final class GGUFTests: XCTestCase {
    func testParsesEveryValueTypeAndTensor() throws {
        let w = sampleWriter()
        let image = w.build()
        let file = try GGUFFile(bytes: image)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.path, "<memory>")
        XCTAssertEqual(file.fileSize, image.count)
        XCTAssertEqual(file.metadataKeys, w.metadata.map(\.0))
        XCTAssertEqual(file.metadata.count, w.metadata.count)
        for (key, value) in w.metadata {
            XCTAssertEqual(file.metadata[key], value, key)
        }
        XCTAssertEqual(file.alignment, 32)

        // Typed accessors.
        XCTAssertEqual(try file.string("general.architecture"), "llama")
        XCTAssertEqual(try file.string("t.string"), "héllo, wörld ✓")
        XCTAssertEqual(try file.int("t.u8"), 200)
        XCTAssertEqual(try file.int("t.i8"), -100)
        XCTAssertEqual(try file.int("t.u32"), 4_000_000_000)
        XCTAssertEqual(try file.int("t.i64"), Int(Int64.min))
        XCTAssertThrowsError(try file.int("t.u64"))  // does not fit in Int
        XCTAssertEqual(try file.double("t.f32"), Double(Float(-1.5e-3)))
        XCTAssertEqual(try file.double("t.f64"), 3.141592653589793)
        XCTAssertEqual(try file.double("t.i16"), -30000)
        XCTAssertEqual(file.metadata["t.bool.true"]?.boolValue, true)
        XCTAssertEqual(file.metadata["t.bool.false"]?.boolValue, false)
        XCTAssertEqual(try file.stringArray("t.array.strings"), ["a", "", "ccc"])
        XCTAssertEqual(try file.array("t.array.empty"), [])
        XCTAssertEqual(try file.array("t.array.nested")[0].arrayValue?.compactMap(\.intValue), [1, 2])
        XCTAssertThrowsError(try file.stringArray("t.array.i32"))
        XCTAssertThrowsError(try file.string("t.u8"))
        XCTAssertThrowsError(try file.int("t.string"))
        XCTAssertThrowsError(try file.array("t.string"))

        // Tensor descriptors, in file order.
        XCTAssertEqual(file.tensors.map(\.name), ["f32.weight", "q8.weight", "q4k.weight", "f16.bias"])
        XCTAssertEqual(file.tensors.map(\.shape), [[3, 2], [32, 1, 1, 2], [256], [5]])
        XCTAssertEqual(file.tensors.map(\.type), [.f32, .q8_0, .q4_K, .f16])
        XCTAssertEqual(file.tensors.map(\.offset), w.tensorOffsets)
        XCTAssertEqual(w.tensorOffsets, [0, 32, 128, 288])
        XCTAssertEqual(file.tensors.map(\.elementCount), [6, 64, 256, 5])
        XCTAssertEqual(file.tensors.map(\.byteCount), [24, 68, 144, 10])
        XCTAssertNil(file.tensor(named: "missing"))

        // Data section: aligned, right after the descriptors, and pointing at the right bytes.
        XCTAssertEqual(file.dataOffset % 32, 0)
        XCTAssertEqual(file.dataOffset + 288 + 10, image.count)
        for t in w.tensors {
            let info = try XCTUnwrap(file.tensor(named: t.name))
            let pointer = file.data(of: info)
            let stored = Array(UnsafeRawBufferPointer(start: pointer, count: info.byteCount))
            XCTAssertEqual(stored, t.data, t.name)
        }
        let f32 = try XCTUnwrap(file.tensor(named: "f32.weight"))
        XCTAssertEqual(dequantizeTensor(f32, in: file), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(dequantizeTensor(try XCTUnwrap(file.tensor(named: "f16.bias")), in: file).first,
                       floatFromHalf(0x3C3C))
    }

    func testVersion2IsAccepted() throws {
        let file = try GGUFFile(bytes: sampleWriter(version: 2).build())
        XCTAssertEqual(file.version, 2)
        XCTAssertEqual(file.tensors.count, 4)
        XCTAssertEqual(file.metadata["t.array.deep"], allValues.first { $0.0 == "t.array.deep" }?.1)
    }

    func testCustomAlignment() throws {
        for alignment in [1, 8, 64, 256] {
            let w = sampleWriter(alignment: alignment)
            let file = try GGUFFile(bytes: w.build())
            XCTAssertEqual(file.alignment, alignment)
            XCTAssertEqual(file.dataOffset % alignment, 0)
            XCTAssertEqual(file.tensors.map(\.offset), w.tensorOffsets)
            let q8 = try XCTUnwrap(file.tensor(named: "q8.weight"))
            XCTAssertEqual(Array(UnsafeRawBufferPointer(start: file.data(of: q8), count: 68)), w.tensors[1].data)
        }
        // Alignment that is not a power of two, zero, or not an integer.
        for bad: GGUFValue in [.uint32(0), .uint32(48), .int32(-32), .string("32")] {
            var w = TestGGUFWriter()
            w.add("general.alignment", bad)
            assertRejects(w.build(), "alignment")
        }
        // Tensor offset not a multiple of the alignment.
        var w = sampleWriter()
        w.alignment = 4  // pads to 4 while the reader expects 32
        assertRejects(w.build(), "aligned")
    }

    func testFileWithoutTensorsOrMetadata() throws {
        let empty = try GGUFFile(bytes: TestGGUFWriter().build())
        XCTAssertEqual(empty.tensors.count, 0)
        XCTAssertEqual(empty.metadata.count, 0)
        XCTAssertEqual(empty.dataOffset, 32)
    }

    func testReadsGGUFWriterOutput() throws {
        let file = try GGUFFile(bytes: bytes(hex: ReferenceVectors.ggufWriterImage))
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(try file.string("general.architecture"), "llama")
        XCTAssertEqual(try file.int("tiny.count"), 7)
        XCTAssertEqual(try file.int("tiny.negative"), -3)
        XCTAssertEqual(try file.double("tiny.ratio"), 0.5)
        XCTAssertEqual(file.metadata["tiny.flag"], .bool(true))
        XCTAssertEqual(try file.string("tiny.name"), "héllo")
        XCTAssertEqual(try file.stringArray("tiny.tokens"), ["a", "bc", ""])
        XCTAssertEqual(try file.array("tiny.ints").compactMap(\.intValue), [1, 2, 3])
        let weight = try XCTUnwrap(file.tensor(named: "weight"))
        XCTAssertEqual(weight.shape, [4, 2])
        XCTAssertEqual(dequantizeTensor(weight, in: file), (0..<8).map(Float.init))
        let quant = try XCTUnwrap(file.tensor(named: "quant"))
        XCTAssertEqual(quant.type, .q8_0)
        XCTAssertEqual(quant.shape, [32, 2])
        let values = dequantizeTensor(quant, in: file)
        for (i, v) in values.enumerated() {
            XCTAssertEqual(v, -1 + 2 * Float(i) / 63, accuracy: 0.01)
        }
    }

    func testOpensFilesFromDisk() throws {
        let image = sampleWriter().build()
        let path = NSTemporaryDirectory() + "rocketkv-gguf-test-\(getpid()).gguf"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(image)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.path, path)
        XCTAssertEqual(file.tensors.count, 4)
        XCTAssertEqual(file.metadata["t.array.nested"], allValues.first { $0.0 == "t.array.nested" }?.1)
        let q4k = try XCTUnwrap(file.tensor(named: "q4k.weight"))
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: file.data(of: q4k), count: 144)), (0..<144).map { UInt8(255 - $0) })

        XCTAssertThrowsError(try GGUFFile(path: path + ".missing")) { error in
            XCTAssertTrue("\(error)".contains("cannot open"), "\(error)")
        }
        XCTAssertThrowsError(try GGUFFile(path: NSTemporaryDirectory())) { error in
            XCTAssertTrue("\(error)".contains("not a regular file"), "\(error)")
        }
        let tiny = path + ".tiny"
        XCTAssertTrue(FileManager.default.createFile(atPath: tiny, contents: Data(image[0..<10])))
        defer { try? FileManager.default.removeItem(atPath: tiny) }
        XCTAssertThrowsError(try GGUFFile(path: tiny))
    }

    // MARK: Malformed files

    func testBadMagic() {
        assertRejects([UInt8](repeating: 0, count: 64), "magic")
        var w = sampleWriter()
        w.magic = 0x4655_4746  // "FGUF"
        assertRejects(w.build(), "magic")
        assertRejects(Array("GGML".utf8) + [UInt8](repeating: 0, count: 60), "magic")
        assertRejects([], "magic")
        assertRejects(Array("GGU".utf8), "magic")
    }

    func testUnsupportedVersions() {
        for version: UInt32 in [0, 1, 4, 0x0300_0000, .max] {
            var w = sampleWriter()
            w.version = version
            assertRejects(w.build(), "version")
        }
    }

    /// Every prefix of a valid file either parses or throws a GGUFError; none may crash.
    func testTruncationAtEveryOffset() throws {
        for w in [sampleWriter(), sampleWriter(version: 2, alignment: 8)] {
            let image = w.build()
            var parsed = 0
            for length in 0..<image.count {
                do {
                    let file = try GGUFFile(bytes: Array(image[0..<length]))
                    // Only a cut inside the last tensor's trailing padding could parse; there is none here.
                    XCTFail("truncated file of \(length)/\(image.count) bytes parsed with \(file.tensors.count) tensors")
                    parsed += 1
                } catch is GGUFError {
                } catch {
                    XCTFail("length \(length): unexpected error \(error)")
                }
            }
            XCTAssertEqual(parsed, 0)
            XCTAssertNoThrow(try GGUFFile(bytes: image))
        }
        // A file cut in its data section names the tensor.
        let image = sampleWriter().build()
        assertRejects(Array(image.dropLast()), "f16.bias")
    }

    func testTensorDataOutOfBounds() {
        var w = sampleWriter()
        w.tensors[3].shape = [6]  // one element more than stored
        assertRejects(w.build(), "outside the file")

        // An offset beyond the end of the file.
        var out = TestGGUFWriter().header(tensorCount: 1)
        out.string("t"); out.u32(1); out.u64(32); out.u32(GGMLType.f32.rawValue); out.u64(1 << 62)
        out.pad(to: 32)
        out.bytes += [UInt8](repeating: 0, count: 128)
        assertRejects(out.bytes, "beyond the file")
    }

    func testUnknownTensorType() {
        for typeID: UInt32 in [4, 5, 16, 29, 31, 1000, .max] {
            var out = TestGGUFWriter().header(tensorCount: 1)
            out.string("t"); out.u32(1); out.u64(32); out.u32(typeID); out.u64(0)
            out.pad(to: 32)
            out.bytes += [UInt8](repeating: 0, count: 256)
            assertRejects(out.bytes, "unsupported tensor type \(typeID)")
        }
    }

    func testUnknownMetadataValueType() {
        for typeID: UInt32 in [13, 14, 255, .max] {
            var out = TestGGUFWriter().header(kvCount: 1)
            out.string("key"); out.u32(typeID); out.u64(0)
            out.bytes += [UInt8](repeating: 0, count: 64)
            assertRejects(out.bytes, "unknown GGUF metadata value type \(typeID)")
            // The same type id as an array element type, in a non-empty and in an empty array.
            for count: UInt64 in [1, 0] {
                var arr = TestGGUFWriter().header(kvCount: 1)
                arr.string("key"); arr.u32(9); arr.u32(typeID); arr.u64(count)
                arr.bytes += [UInt8](repeating: 0, count: 64)
                assertRejects(arr.bytes, "type \(typeID)")
            }
        }
    }

    func testInvalidBool() {
        var out = TestGGUFWriter().header(kvCount: 1)
        out.string("flag"); out.u32(7); out.u8(2)
        assertRejects(out.bytes, "bool")
    }

    func testAbsurdCounts() {
        for count: UInt64 in [1 << 60, UInt64.max, 1 << 32, 1_000_000] {
            assertRejects(TestGGUFWriter().header(tensorCount: count).bytes + [UInt8](repeating: 0, count: 64), "tensor count")
            assertRejects(TestGGUFWriter().header(kvCount: count).bytes + [UInt8](repeating: 0, count: 64), "metadata count")
        }
        // Counts that fit the file size but describe more entries than are present.
        assertRejects(sampleWriter().header(tensorCount: 5).bytes, "truncated")
        var w = sampleWriter()
        w.tensors = []
        assertRejects(w.header(kvCount: UInt64(w.metadata.count + 1)).bytes + [0, 0, 0, 0], "truncated")
    }

    func testAbsurdStringLength() {
        for length: UInt64 in [1 << 60, UInt64.max, 100] {
            // As a key.
            var key = TestGGUFWriter().header(kvCount: 1)
            key.u64(length)
            key.bytes += Array("short".utf8) + [UInt8](repeating: 0, count: 16)
            assertRejects(key.bytes, "string of \(length) bytes")
            // As a value.
            var value = TestGGUFWriter().header(kvCount: 1)
            value.string("k"); value.u32(8); value.u64(length)
            value.bytes += [UInt8](repeating: 0x41, count: 16)
            assertRejects(value.bytes, "string of \(length) bytes")
            // As a tensor name.
            var name = TestGGUFWriter().header(tensorCount: 1)
            name.u64(length)
            name.bytes += [UInt8](repeating: 0x41, count: 40)
            assertRejects(name.bytes, "string of \(length) bytes")
        }
    }

    func testAbsurdArrayLength() {
        for (elementType, length): (UInt32, UInt64) in [(0, 1 << 60), (0, .max), (10, 1 << 40), (8, 1 << 61), (9, 1 << 59), (10, 10)] {
            var out = TestGGUFWriter().header(kvCount: 1)
            out.string("arr"); out.u32(9); out.u32(elementType); out.u64(length)
            out.bytes += [UInt8](repeating: 0, count: 32)
            assertRejects(out.bytes, "array length \(length)")
        }
        // Arrays nested too deeply.
        var deep = TestGGUFWriter().header(kvCount: 1)
        deep.string("deep"); deep.u32(9)
        for _ in 0..<20 { deep.u32(9); deep.u64(1) }
        deep.u32(0); deep.u64(0)
        assertRejects(deep.bytes, "nested")
    }

    /// Metadata arrays are bounded in memory: elements inline, and at most 2²⁵ of them in a file (a 33 MB
    /// array of bytes would otherwise cost ~0.5–1.5 GB as values).
    func testMetadataArrayMemoryIsBounded() {
        XCTAssertLessThanOrEqual(MemoryLayout<GGUFValue>.stride, 24)
        let length = (1 << 25) + 1
        var out = TestGGUFWriter().header(kvCount: 1)
        out.string("arr"); out.u32(9); out.u32(0); out.u64(UInt64(length))
        out.bytes += [UInt8](repeating: 0, count: length)
        assertRejects(out.bytes, "more than \(1 << 25) elements")
    }

    func testDimensionCount() {
        for nDims: UInt32 in [0, 5, 9, .max] {
            var out = TestGGUFWriter().header(tensorCount: 1)
            out.string("t"); out.u32(nDims)
            for _ in 0..<9 { out.u64(32) }
            out.u32(0); out.u64(0)
            out.pad(to: 32)
            out.bytes += [UInt8](repeating: 0, count: 1024)
            assertRejects(out.bytes, "\(nDims) dimensions")
        }
    }

    func testInvalidDimensions() {
        for shape: [UInt64] in [[0], [32, 0], [1 << 40], [UInt64.max], [1 << 20, 1 << 20, 1 << 20]] {
            var out = TestGGUFWriter().header(tensorCount: 1)
            out.string("t"); out.u32(UInt32(shape.count))
            for d in shape { out.u64(d) }
            out.u32(GGMLType.f32.rawValue); out.u64(0)
            out.pad(to: 32)
            out.bytes += [UInt8](repeating: 0, count: 64)
            assertRejects(out.bytes, "tensor 't'")
        }
    }

    func testRowLengthNotMultipleOfBlockSize() {
        for (type, rowLength) in [(GGMLType.q8_0, 33), (.q4_0, 16), (.q4_K, 128), (.q6_K, 257), (.q5_1, 1)] {
            var w = TestGGUFWriter()
            w.addTensor("bad", shape: [rowLength, 2], type: type, data: [UInt8](repeating: 0, count: 2048))
            assertRejects(w.build(), "row length \(rowLength) is not a multiple of the \(type.name) block size")
        }
    }

    func testDuplicateKeysAndTensorNames() {
        var keys = sampleWriter()
        keys.add("t.u8", .uint8(1))
        assertRejects(keys.build(), "duplicate metadata key 't.u8'")
        var tensors = sampleWriter()
        tensors.addTensor("f32.weight", shape: [1], type: .f32, data: [0, 0, 0, 0])
        assertRejects(tensors.build(), "duplicate tensor name 'f32.weight'")
    }

    func testMissingKeysNameTheKey() throws {
        let file = try GGUFFile(bytes: sampleWriter().build())
        let accessors: [() throws -> Void] = [{ _ = try file.string("llama.missing_string") }, { _ = try file.int("llama.missing_string") },
                       { _ = try file.double("llama.missing_string") }, { _ = try file.array("llama.missing_string") },
                       { _ = try file.stringArray("llama.missing_string") }]
        for access in accessors {
            XCTAssertThrowsError(try access()) { error in
                XCTAssertTrue((error as? GGUFError)?.description.contains("llama.missing_string") == true, "\(error)")
            }
        }
        XCTAssertThrowsError(try file.string("t.u8")) { error in
            XCTAssertTrue("\(error)".contains("t.u8"), "\(error)")
        }
    }

    /// Random single-byte corruptions of a valid file: each parses or throws, never crashes.
    func testRandomCorruptionsNeverCrash() {
        let image = sampleWriter().build()
        var state: UInt64 = 12345
        func next() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: state >> 33)
        }
        for _ in 0..<3000 {
            var corrupt = image
            for _ in 0..<(1 + next() % 3) {
                corrupt[next() % corrupt.count] = UInt8(truncatingIfNeeded: next())
            }
            do { _ = try GGUFFile(bytes: corrupt) } catch is GGUFError {} catch { XCTFail("unexpected error \(error)") }
        }
    }
}
