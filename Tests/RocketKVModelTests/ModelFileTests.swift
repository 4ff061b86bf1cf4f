import XCTest
import RocketKV

final class ModelFileTests: XCTestCase {
    func testDefaultModelMetadata() throws {
        let file = TestModel.file
        XCTAssertEqual(try file.string("general.architecture"), "llama")
        XCTAssertEqual(try file.int("llama.block_count"), 30)
        XCTAssertEqual(file.tensors.count, 272)
        XCTAssertEqual(try file.stringArray("tokenizer.ggml.tokens").count, 49152)
        XCTAssertEqual(file.tensor(named: "token_embd.weight")?.type, .q8_0)
        XCTAssertEqual(file.tensor(named: "token_embd.weight")?.shape, [576, 49152])
    }
}
