using System.Text.Json;
using System.Text.Json.Nodes;
using HeadLens.Embeddings;
using HeadLens.Model;

namespace HeadLens.Checkpoints;

/// <summary>
/// The one place where Hugging Face names meet HeadLens names: a mapping table per checkpoint layout, stating every
/// transpose, used for loading and saving. GPT-2 (GPT2LMHeadModel) stores its projections as Conv1D weights
/// [in, out] — transposed here to nn.Linear's [out, in] — and fuses Q, K, V into c_attn [C, 3C], split here into
/// three [C, C] matrices. Llama (LlamaForCausalLM) and Qwen2 (Qwen2ForCausalLM) store nn.Linear weights [out, in]:
/// no transposes; Qwen2 adds q/k/v biases. Llama's q_proj/k_proj rows are in the split-halves RoPE order, which is
/// the order HeadLens uses for Hugging Face checkpoints. config.json keys that change the math are either turned
/// into features or refused, one line naming the key.
/// </summary>
public static class HuggingFaceFormat
{
    /// <summary>How one HeadLens tensor is stored in the checkpoint.</summary>
    /// <param name="Ours">HeadLens's name.</param>
    /// <param name="Theirs">The checkpoint's name.</param>
    /// <param name="Transpose">Stored [in, out] (Conv1D): transpose to [out, in].</param>
    /// <param name="Part">For fused tensors: which of <paramref name="Parts"/> equal row blocks (after any transpose).</param>
    public sealed record Entry(string Ours, string Theirs, bool Transpose = false, int Part = 0, int Parts = 1);

    /// <summary>
    /// Tensors a checkpoint may hold that the model does not read, and why: GPT-2's attention buffers are the causal
    /// mask (HeadLens builds its own), older Llama files store RoPE's inverse frequencies (recomputed from
    /// rope_theta). A tied model's lm_head.weight is handled by the loader (it must equal the embeddings).
    /// </summary>
    public static bool IsSkipped(string name) =>
        name.EndsWith(".attn.bias", StringComparison.Ordinal)
        || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal)
        || name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)
        // BERT: position_ids is an index buffer [0, 1, ...]; the pooler ([CLS] → tanh) is a classification head that
        // token-level outputs and mean-pooled sentence embeddings never use.
        || name.EndsWith("embeddings.position_ids", StringComparison.Ordinal)
        || name.StartsWith("pooler.", StringComparison.Ordinal)
        || name.StartsWith("bert.pooler.", StringComparison.Ordinal);

    public static IEnumerable<Entry> Map(ModelConfig config) => config.Layout switch
    {
        CheckpointLayout.Gpt2 => Gpt2Map(config),
        CheckpointLayout.Llama or CheckpointLayout.Qwen2 => LlamaMap(config),
        CheckpointLayout.Bert => BertMap(config),
        _ => throw new HeadLensException($"no Hugging Face layout for {config.Layout} models"),
    };

    private static IEnumerable<Entry> Gpt2Map(ModelConfig config)
    {
        yield return new("token_embedding.weight", "transformer.wte.weight");
        yield return new("position_embedding.weight", "transformer.wpe.weight");
        for (int l = 0; l < config.Layers; l++)
        {
            string ours = $"layers.{l}.", theirs = $"transformer.h.{l}.";
            yield return new(ours + "attention_norm.weight", theirs + "ln_1.weight");
            yield return new(ours + "attention_norm.bias", theirs + "ln_1.bias");
            yield return new(ours + "attention.query.weight", theirs + "attn.c_attn.weight", Transpose: true, Part: 0, Parts: 3);
            yield return new(ours + "attention.key.weight", theirs + "attn.c_attn.weight", Transpose: true, Part: 1, Parts: 3);
            yield return new(ours + "attention.value.weight", theirs + "attn.c_attn.weight", Transpose: true, Part: 2, Parts: 3);
            yield return new(ours + "attention.query.bias", theirs + "attn.c_attn.bias", Part: 0, Parts: 3);
            yield return new(ours + "attention.key.bias", theirs + "attn.c_attn.bias", Part: 1, Parts: 3);
            yield return new(ours + "attention.value.bias", theirs + "attn.c_attn.bias", Part: 2, Parts: 3);
            yield return new(ours + "attention.output.weight", theirs + "attn.c_proj.weight", Transpose: true);
            yield return new(ours + "attention.output.bias", theirs + "attn.c_proj.bias");
            if (config.HasMlp)
            {
                yield return new(ours + "mlp_norm.weight", theirs + "ln_2.weight");
                yield return new(ours + "mlp_norm.bias", theirs + "ln_2.bias");
                yield return new(ours + "mlp.up.weight", theirs + "mlp.c_fc.weight", Transpose: true);
                yield return new(ours + "mlp.up.bias", theirs + "mlp.c_fc.bias");
                yield return new(ours + "mlp.down.weight", theirs + "mlp.c_proj.weight", Transpose: true);
                yield return new(ours + "mlp.down.bias", theirs + "mlp.c_proj.bias");
            }
        }

        yield return new("final_norm.weight", "transformer.ln_f.weight");
        yield return new("final_norm.bias", "transformer.ln_f.bias");
        if (!config.TiedEmbeddings)
        {
            yield return new("output_head.weight", "lm_head.weight");
        }
    }

    private static IEnumerable<Entry> LlamaMap(ModelConfig config)
    {
        yield return new("token_embedding.weight", "model.embed_tokens.weight");
        for (int l = 0; l < config.Layers; l++)
        {
            string ours = $"layers.{l}.", theirs = $"model.layers.{l}.";
            yield return new(ours + "attention_norm.weight", theirs + "input_layernorm.weight");
            foreach (var (which, projection, hf) in new[]
            {
                (Biases.Query, "query", "q_proj"), (Biases.Key, "key", "k_proj"), (Biases.Value, "value", "v_proj"), (Biases.Output, "output", "o_proj"),
            })
            {
                yield return new(ours + $"attention.{projection}.weight", theirs + $"self_attn.{hf}.weight");
                if (config.HasBias(which))
                {
                    yield return new(ours + $"attention.{projection}.bias", theirs + $"self_attn.{hf}.bias");
                }
            }

            if (config.HasMlp)
            {
                yield return new(ours + "mlp_norm.weight", theirs + "post_attention_layernorm.weight");
                yield return new(ours + "mlp.gate.weight", theirs + "mlp.gate_proj.weight");
                yield return new(ours + "mlp.up.weight", theirs + "mlp.up_proj.weight");
                yield return new(ours + "mlp.down.weight", theirs + "mlp.down_proj.weight");
            }
        }

        yield return new("final_norm.weight", "model.norm.weight");
        if (!config.TiedEmbeddings)
        {
            yield return new("output_head.weight", "lm_head.weight");
        }
    }

    // BertModel: nn.Linear weights [out, in], no transposes. The norm after each residual add is the block's post-norm:
    // attention.output.LayerNorm → attention_norm, output.LayerNorm → mlp_norm.
    private static IEnumerable<Entry> BertMap(ModelConfig config)
    {
        yield return new("token_embedding.weight", "embeddings.word_embeddings.weight");
        yield return new("position_embedding.weight", "embeddings.position_embeddings.weight");
        yield return new("token_type_embedding.weight", "embeddings.token_type_embeddings.weight");
        yield return new("embedding_norm.weight", "embeddings.LayerNorm.weight");
        yield return new("embedding_norm.bias", "embeddings.LayerNorm.bias");
        for (int l = 0; l < config.Layers; l++)
        {
            string ours = $"layers.{l}.", theirs = $"encoder.layer.{l}.";
            foreach (string part in new[] { "weight", "bias" })
            {
                yield return new(ours + $"attention.query.{part}", theirs + $"attention.self.query.{part}");
                yield return new(ours + $"attention.key.{part}", theirs + $"attention.self.key.{part}");
                yield return new(ours + $"attention.value.{part}", theirs + $"attention.self.value.{part}");
                yield return new(ours + $"attention.output.{part}", theirs + $"attention.output.dense.{part}");
                yield return new(ours + $"attention_norm.{part}", theirs + $"attention.output.LayerNorm.{part}");
                yield return new(ours + $"mlp.up.{part}", theirs + $"intermediate.dense.{part}");
                yield return new(ours + $"mlp.down.{part}", theirs + $"output.dense.{part}");
                yield return new(ours + $"mlp_norm.{part}", theirs + $"output.LayerNorm.{part}");
            }
        }
    }

    /// <summary>config.json in the field names of transformers' GPT2Config / LlamaConfig / Qwen2Config / BertConfig.</summary>
    public static string ConfigJson(ModelConfig config)
    {
        JsonObject json;
        if (config.Layout == CheckpointLayout.Bert)
        {
            json = SharedFields(config, "BertModel", "bert");
            json["type_vocab_size"] = config.TokenTypes;
            json["layer_norm_eps"] = config.NormEpsilon;
            json["hidden_act"] = "gelu";
            json["position_embedding_type"] = "absolute";
        }
        else if (config.Layout == CheckpointLayout.Gpt2)
        {
            json = new JsonObject
            {
                ["architectures"] = new JsonArray("GPT2LMHeadModel"),
                ["model_type"] = "gpt2",
                ["vocab_size"] = config.VocabSize,
                ["n_positions"] = config.ContextLength,
                ["n_ctx"] = config.ContextLength,
                ["n_embd"] = config.Channels,
                ["n_layer"] = config.Layers,
                ["n_head"] = config.Heads,
                ["n_inner"] = config.HiddenChannels,
                ["activation_function"] = "gelu_new",
                ["layer_norm_epsilon"] = config.NormEpsilon,
                ["tie_word_embeddings"] = config.TiedEmbeddings,
            };
        }
        else
        {
            bool qwen2 = config.Layout == CheckpointLayout.Qwen2;
            json = SharedFields(config, qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM", qwen2 ? "qwen2" : "llama");
            json["num_key_value_heads"] = config.KvHeads;
            json["rms_norm_eps"] = config.NormEpsilon;
            json["rope_theta"] = config.Rope.Theta;
            json["hidden_act"] = "silu";
            json["tie_word_embeddings"] = config.TiedEmbeddings;
            if (!qwen2)
            {
                json["attention_bias"] = config.Biases != Biases.None;
            }

            var scaling = config.Rope;
            if (scaling.Scaling == RopeScaling.Linear)
            {
                json["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = scaling.ScalingFactor };
            }
            else if (scaling.Scaling == RopeScaling.Llama3)
            {
                json["rope_scaling"] = new JsonObject
                {
                    ["rope_type"] = "llama3",
                    ["factor"] = scaling.ScalingFactor,
                    ["low_freq_factor"] = scaling.LowFrequencyFactor,
                    ["high_freq_factor"] = scaling.HighFrequencyFactor,
                    ["original_max_position_embeddings"] = scaling.OriginalContext,
                };
            }
        }

        if (!config.HasMlp)
        {
            json["headlens_attention_only"] = true;
        }

        if (config.AttentionForm == AttentionForm.Linear)
        {
            json["headlens_attention_form"] = "linear";
        }

        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    // The shape fields Llama, Qwen2 and BERT configs name alike.
    private static JsonObject SharedFields(ModelConfig config, string architecture, string modelType) => new()
    {
        ["architectures"] = new JsonArray(architecture),
        ["model_type"] = modelType,
        ["vocab_size"] = config.VocabSize,
        ["max_position_embeddings"] = config.ContextLength,
        ["hidden_size"] = config.Channels,
        ["intermediate_size"] = config.HiddenChannels,
        ["num_hidden_layers"] = config.Layers,
        ["num_attention_heads"] = config.Heads,
    };

    public static ModelConfig ParseConfig(string path)
    {
        string file = Path.GetFileName(Path.GetDirectoryName(path) ?? "") + "/config.json";
        JsonNode? root;
        try
        {
            // Duplicate keys are refused: which one wins differs between readers, so the file means two things.
            root = JsonNode.Parse(InputFile.ReadAllText(path, InputFile.JsonLimit), documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException error)
        {
            throw new HeadLensException($"{file}: malformed JSON ({InputFile.Reason(error)})");
        }

        if (root is not JsonObject json)
        {
            throw new HeadLensException($"{file}: not a JSON object");
        }

        var fields = new ConfigFields(file, json);
        string type = fields.String("model_type") ?? "";
        var config = type switch
        {
            "gpt2" => Gpt2Config(fields),
            "llama" => LlamaConfig(fields, CheckpointLayout.Llama),
            "qwen2" => LlamaConfig(fields, CheckpointLayout.Qwen2),
            "bert" => BertConfig(fields),
            _ => throw new HeadLensException($"{file}: model_type '{type}' is not supported (gpt2, llama, qwen2, bert)"),
        };
        if (fields.Bool("headlens_attention_only", false))
        {
            config = config with { Mlp = MlpKind.None };
        }

        // HeadLens's own key: no Hugging Face architecture computes linear attention (PyTorch ignores the key).
        fields.Require("headlens_attention_form", "softmax", "softmax", "linear");
        if (fields.String("headlens_attention_form") == "linear")
        {
            config = config with { AttentionForm = AttentionForm.Linear };
        }

        return config.Validated(file);
    }

    private static ModelConfig Gpt2Config(ConfigFields json)
    {
        // gelu_new and gelu_pytorch_tanh are both GELU's tanh form; the exact erf GELU ("gelu") is another function.
        json.Require("activation_function", "gelu_new", "gelu_new", "gelu_pytorch_tanh");
        json.RequireBool("scale_attn_weights", true);
        json.RequireBool("scale_attn_by_inverse_layer_idx", false);
        json.RequireBool("add_cross_attention", false);
        int channels = json.Int("n_embd");
        return ModelPresets.Gpt2(json.Int("vocab_size"), json.Int("n_positions", "n_ctx"), json.Int("n_layer"), json.Int("n_head"), channels) with
        {
            HiddenChannels = json.OptionalInt("n_inner") ?? (int)Math.Min(4L * channels, int.MaxValue),
            NormEpsilon = json.Float("layer_norm_epsilon", 1e-5f),
            TiedEmbeddings = json.Bool("tie_word_embeddings", true),
        };
    }

    private static ModelConfig BertConfig(ConfigFields json)
    {
        // "gelu" in transformers is the exact erf form; gelu_new/gelu_pytorch_tanh would be another function.
        json.Require("hidden_act", "gelu", "gelu");
        json.Require("position_embedding_type", "absolute", "absolute");
        json.RequireBool("is_decoder", false);
        json.RequireBool("add_cross_attention", false);
        int heads = json.Int("num_attention_heads");
        return ModelPresets.Bert(json.Int("vocab_size"), json.Int("max_position_embeddings"), json.Int("num_hidden_layers"), heads,
            json.Int("hidden_size"), json.Int("intermediate_size")) with
        {
            TokenTypes = json.OptionalInt("type_vocab_size") ?? 2,
            NormEpsilon = json.Float("layer_norm_eps", 1e-12f),
        };
    }

    private static ModelConfig LlamaConfig(ConfigFields json, CheckpointLayout layout)
    {
        json.Require("hidden_act", "silu", "silu");
        json.RequireBool("mlp_bias", false);
        bool qwen2 = layout == CheckpointLayout.Qwen2;
        if (qwen2)
        {
            // Qwen2's sliding window applies to some layers only; HeadLens would compute full attention instead.
            json.RequireBool("use_sliding_window", false);
        }

        int heads = json.Int("num_attention_heads"), channels = json.Int("hidden_size");
        if (json.OptionalInt("head_dim") is { } headDim && headDim * heads != channels)
        {
            throw new HeadLensException($"{json.File}: head_dim {headDim} × {heads} heads differs from hidden_size {channels}: not supported");
        }

        var preset = qwen2 ? ModelPresets.Qwen2(0, 0, 0, heads, heads, channels, 0) : ModelPresets.Llama(0, 0, 0, heads, heads, channels, 0);
        return preset with
        {
            VocabSize = json.Int("vocab_size"),
            ContextLength = json.Int("max_position_embeddings"),
            HiddenChannels = json.Int("intermediate_size"),
            Layers = json.Int("num_hidden_layers"),
            KvHeads = json.OptionalInt("num_key_value_heads") ?? heads,
            NormEpsilon = json.Float("rms_norm_eps", 1e-6f),
            Rope = RopeFrom(json),
            TiedEmbeddings = json.Bool("tie_word_embeddings", false),
            // Llama's attention_bias puts a bias on q, k, v and o; Qwen2 always has q, k, v biases and no o bias.
            Biases = qwen2 ? Biases.QueryKeyValue : json.Bool("attention_bias", false) ? Biases.QueryKeyValue | Biases.Output : Biases.None,
        };
    }

    private static RopeSettings RopeFrom(ConfigFields json)
    {
        var settings = new RopeSettings(json.Float("rope_theta", 10000f));
        if (json.Object("rope_scaling") is not { } scaling)
        {
            return settings;
        }

        string key = json.File + " rope_scaling";
        string kind = (scaling["rope_type"] ?? scaling["type"])?.GetValue<string>() ?? "";
        float Factor(string name) => scaling[name] is JsonValue value && value.TryGetValue(out double number)
            ? (float)number : throw new HeadLensException($"{key}: missing number '{name}'");
        return kind switch
        {
            "default" => settings,
            "linear" => settings with { Scaling = RopeScaling.Linear, ScalingFactor = Factor("factor") },
            "llama3" => settings with
            {
                Scaling = RopeScaling.Llama3,
                ScalingFactor = Factor("factor"),
                LowFrequencyFactor = Factor("low_freq_factor"),
                HighFrequencyFactor = Factor("high_freq_factor"),
                OriginalContext = (int)Factor("original_max_position_embeddings"),
            },
            _ => throw new HeadLensException($"{key}: type '{kind}' is not implemented (linear, llama3)"),
        };
    }

    /// <summary>Typed reads of config.json fields, each failure one line naming the key.</summary>
    private sealed class ConfigFields(string file, JsonObject json)
    {
        public string File { get; } = file;

        public int Int(params string[] names) => names.Select(OptionalInt).FirstOrDefault(value => value is not null)
            ?? throw new HeadLensException($"{File}: missing integer field '{names[0]}'");

        // A field that is present must have its type: "n_layer": "2" or "model_type": 2 is named, not taken as absent.
        public int? OptionalInt(string name) => json[name] switch
        {
            null => null,
            JsonValue value when value.TryGetValue(out int result) => result,
            var other => throw new HeadLensException($"{File}: '{name}' is {Shown(other)}, not an integer in the range of int32"),
        };

        public float Float(string name, float fallback) => json[name] switch
        {
            null => fallback,
            JsonValue value when value.TryGetValue(out double result) => (float)result,
            var other => throw new HeadLensException($"{File}: '{name}' is {Shown(other)}, not a number"),
        };

        public bool Bool(string name, bool fallback) =>
            json[name] is JsonValue value && value.TryGetValue(out bool result) ? result : fallback;

        public string? String(string name) => json[name] switch
        {
            null => null,
            JsonValue value when value.TryGetValue(out string? result) => result,
            var other => throw new HeadLensException($"{File}: '{name}' is {Shown(other)}, not a string"),
        };

        // A JSON value in a one-line message: at most 40 characters of it.
        private static string Shown(JsonNode node)
        {
            string text = node.ToJsonString();
            return text.Length > 40 ? text[..40] + "…" : text;
        }

        public JsonObject? Object(string name) => json[name] as JsonObject;

        /// <summary>A string key that changes the math: absent (the default) or one of the implemented values.</summary>
        public void Require(string name, string fallback, params string[] implemented)
        {
            string value = String(name) ?? fallback;
            if (!implemented.Contains(value))
            {
                throw new HeadLensException($"{File}: {name} '{value}' is not implemented ({string.Join(", ", implemented)})");
            }
        }

        /// <summary>A flag that changes the math: only its implemented value is accepted.</summary>
        public void RequireBool(string name, bool implemented)
        {
            if (Bool(name, implemented) != implemented)
            {
                throw new HeadLensException($"{File}: {name} = {(!implemented).ToString().ToLowerInvariant()} is not implemented");
            }
        }
    }
}
