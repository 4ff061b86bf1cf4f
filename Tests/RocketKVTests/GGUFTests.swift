import XCTest
import RocketKV

final class GGUFTests: XCTestCase {
    func testBadMagic() {
        XCTAssertThrowsError(try GGUFFile(bytes: Array(repeating: 0, count: 64)))
    }
}
