import Foundation

/// The files of an evaluation folder besides `predictions.jsonl`: `config.json` (every sweep that wrote into
/// the folder, per task), `metrics.json` and `report.html`; and the merge of shard folders into one.
public enum EvalFolder {
    /// The sweeps recorded in `folder/config.json` per task; empty when there is none yet.
    public static func configurations(in folder: URL) throws -> [String: [EvalSettings]] {
        let url = folder.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: url.path) else { return [:] }
        do {
            return try JSONDecoder().decode([String: [EvalSettings]].self, from: data)
        } catch {
            throw InferenceError("\(url.path) is not an evaluation configuration (\(error)); remove it or use another --out")
        }
    }

    /// `configurations` with `settings` added (if new), and the index of `settings` among its task's sweeps.
    public static func adding(_ settings: EvalSettings, to configurations: [String: [EvalSettings]]) -> ([String: [EvalSettings]], Int) {
        var result = configurations
        let list = result[settings.task] ?? []
        if let index = list.firstIndex(of: settings) { return (result, index) }
        result[settings.task] = list + [settings]
        return (result, list.count)
    }

    /// Writes `config.json`, `metrics.json` and `report.html` for `store`'s predictions; returns the metrics.
    @discardableResult
    public static func writeSummaries(_ store: EvalStore, configurations: [String: [EvalSettings]]) throws -> [EvalMetric] {
        try store.writeJSON(configurations, name: "config.json")
        let metrics = EvalMetric.summarize(store.predictions)
        try store.writeJSON(metrics, name: "metrics.json")
        let html = EvalReport.html(predictions: store.predictions, settings: configurations)
        try Data(html.utf8).write(to: store.folder.appendingPathComponent("report.html"))
        return metrics
    }

    /// Combines the shard folders of one sweep plan (each run with `--shard I/N`, the same commands in the same
    /// order) into `output`: one `predictions.jsonl` in the order the unsharded run writes (sweep by sweep,
    /// prompt by prompt), `config.json` without the shard, `metrics.json` and `report.html`. Refuses shards
    /// whose configurations differ, a missing or repeated shard, and an `output` that already has predictions.
    @discardableResult
    public static func merge(_ shards: [URL], into output: URL) throws -> [EvalMetric] {
        guard !shards.isEmpty else { throw InferenceError("no shard folders to merge") }
        var merged: [String: [EvalSettings]]?
        var seen: [String: Set<Int>] = [:], counts: [String: Int] = [:]
        var predictions: [EvalPrediction] = []
        for folder in shards {
            var configurations = try self.configurations(in: folder)
            guard !configurations.isEmpty else { throw InferenceError("\(folder.path) has no config.json") }
            for (task, list) in configurations {
                for (index, settings) in list.enumerated() {
                    guard let shard = settings.shard else { throw InferenceError("\(folder.path): the \(task) sweep \(index) was not run with --shard") }
                    let key = "\(task)#\(index)"
                    if let n = counts[key], n != shard.count {
                        throw InferenceError("\(folder.path): shard \(shard) of the \(task) sweep \(index), others have \(n) shards")
                    }
                    counts[key] = shard.count
                    guard seen[key, default: []].insert(shard.index).inserted else {
                        throw InferenceError("\(folder.path): shard \(shard) of the \(task) sweep \(index) is given twice")
                    }
                }
                configurations[task] = list.map { var s = $0; s.shard = nil; return s }
            }
            if let merged, merged != configurations {
                throw InferenceError("\(folder.path) was run with other settings than \(shards[0].path); only shards of the same sweeps merge")
            }
            merged = configurations
            predictions += try EvalStore.read(folder.appendingPathComponent("predictions.jsonl"))
        }
        for (key, n) in counts where seen[key]!.count != n {
            let missing = (0..<n).filter { !seen[key]!.contains($0) }.map { "\($0)/\(n)" }
            throw InferenceError("shards \(missing.joined(separator: ", ")) of the \(key.replacingOccurrences(of: "#", with: " sweep ")) are missing")
        }
        if FileManager.default.fileExists(atPath: output.appendingPathComponent("predictions.jsonl").path),
           !(try EvalStore.read(output.appendingPathComponent("predictions.jsonl"))).isEmpty {
            throw InferenceError("\(output.path) already has predictions; merge into an empty folder")
        }
        // Shard 0 holds prompt 0 of every sweep, so its order of sweeps is the order they were run in.
        var sweepOrder: [String: Int] = [:]
        for p in predictions where sweepOrder[sweepKey(p)] == nil { sweepOrder[sweepKey(p)] = sweepOrder.count }
        let ordered = predictions.enumerated().sorted { a, b in
            let ka = (sweepOrder[sweepKey(a.element)]!, a.element.prompt ?? 0), kb = (sweepOrder[sweepKey(b.element)]!, b.element.prompt ?? 0)
            return ka != kb ? ka < kb : a.offset < b.offset
        }.map(\.element)
        let store = try EvalStore(folder: output)
        for p in ordered { try store.append(p) }
        return try writeSummaries(store, configurations: merged!)
    }

    /// A sweep: the task family (`ruler/...` tasks are one sweep) and the sweep's index in `config.json`.
    private static func sweepKey(_ p: EvalPrediction) -> String {
        "\(p.task.split(separator: "/").first.map(String.init) ?? p.task)#\(p.sweep ?? 0)"
    }
}
