import Foundation
import RocketKV
import XCTest

/// Download verification: SHA-256 against the standard's test vectors, and the cache's size/hash check.
final class ModelStoreTests: XCTestCase {
    func testSHA256Vectors() {
        func hex(_ s: String, splitAt cut: Int? = nil) -> String {
            var h = SHA256()
            let bytes = Array(s.utf8)
            let parts = cut.map { [Array(bytes[..<$0]), Array(bytes[$0...])] } ?? [bytes]
            for part in parts { part.withUnsafeBytes { h.update($0) } }
            return h.finalizeHex()
        }
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        XCTAssertEqual(hex(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        for cut in [1, 3, 55, 56] { XCTAssertEqual(hex(two, splitAt: cut), hex(two)) }
        XCTAssertEqual(hex(String(repeating: "a", count: 1_000_000)), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testCatalogNamesAndVerification() throws {
        XCTAssertEqual(ModelStore.defaultModel.name, "smollm2-135m")
        XCTAssertNotNil(ModelStore.catalogModel(named: "gemma3-270m"))
        XCTAssertEqual(try ModelStore.resolve("/some/file.gguf"), "/some/file.gguf")   // a path passes through
        // A file verifies only with the catalog's size and digest; a success is remembered until the file changes.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rocketkv-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("m.gguf")
        try Data("abc".utf8).write(to: file)
        let good = ModelStore.CatalogModel(name: "t", architecture: "llama", summary: "", fileName: "m.gguf", parts: [], size: 3,
                                           sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let wrongHash = ModelStore.CatalogModel(name: "t", architecture: "llama", summary: "", fileName: "m.gguf", parts: [], size: 3,
                                                sha256: String(repeating: "0", count: 64))
        XCTAssertFalse(try ModelStore.verify(file, as: wrongHash))
        XCTAssertTrue(try ModelStore.verify(file, as: good))
        XCTAssertTrue(FileManager.default.fileExists(atPath: file.path + ".verified"))
        try Data("abd".utf8).write(to: file)   // same size, other bytes, new modification time
        XCTAssertFalse(try ModelStore.verify(file, as: good))
    }
}
