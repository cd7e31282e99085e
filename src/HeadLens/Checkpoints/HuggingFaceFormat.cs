using System.Text.Json;
using System.Text.Json.Nodes;
using HeadLens.Model;

namespace HeadLens.Checkpoints;

/// <summary>
/// The one place where Hugging Face names meet HeadLens names: a mapping table per family, stating every transpose.
/// GPT-2 (GPT2LMHeadModel) stores its projections as Conv1D weights [in, out] — transposed here to nn.Linear's
/// [out, in] — and fuses Q, K, V into c_attn [C, 3C], split here into three [C, C] matrices. Llama
/// (LlamaForCausalLM) stores nn.Linear weights [out, in]: no transposes. Llama's q_proj/k_proj rows are in the
/// split-halves RoPE order, which is the order HeadLens uses for Hugging Face checkpoints.
/// </summary>
public static class HuggingFaceFormat
{
    /// <summary>How one HeadLens tensor is stored in the checkpoint.</summary>
    /// <param name="Ours">HeadLens's name.</param>
    /// <param name="Theirs">The checkpoint's name.</param>
    /// <param name="Transpose">Stored [in, out] (Conv1D): transpose to [out, in].</param>
    /// <param name="Part">For fused tensors: which of <paramref name="Parts"/> equal row blocks (after any transpose).</param>
    public sealed record Entry(string Ours, string Theirs, bool Transpose = false, int Part = 0, int Parts = 1);

    public static IEnumerable<Entry> Map(ModelConfig config)
    {
        if (config.Family == ModelFamily.Gpt2)
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

            yield break;
        }

        yield return new("token_embedding.weight", "model.embed_tokens.weight");
        for (int l = 0; l < config.Layers; l++)
        {
            string ours = $"layers.{l}.", theirs = $"model.layers.{l}.";
            yield return new(ours + "attention_norm.weight", theirs + "input_layernorm.weight");
            yield return new(ours + "attention.query.weight", theirs + "self_attn.q_proj.weight");
            yield return new(ours + "attention.key.weight", theirs + "self_attn.k_proj.weight");
            yield return new(ours + "attention.value.weight", theirs + "self_attn.v_proj.weight");
            yield return new(ours + "attention.output.weight", theirs + "self_attn.o_proj.weight");
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

    /// <summary>config.json in the field names of transformers' GPT2Config / LlamaConfig.</summary>
    public static string ConfigJson(ModelConfig config)
    {
        var json = config.Family == ModelFamily.Gpt2
            ? new JsonObject
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
            }
            : new JsonObject
            {
                ["architectures"] = new JsonArray("LlamaForCausalLM"),
                ["model_type"] = "llama",
                ["vocab_size"] = config.VocabSize,
                ["max_position_embeddings"] = config.ContextLength,
                ["hidden_size"] = config.Channels,
                ["intermediate_size"] = config.HiddenChannels,
                ["num_hidden_layers"] = config.Layers,
                ["num_attention_heads"] = config.Heads,
                ["num_key_value_heads"] = config.KvHeads,
                ["rms_norm_eps"] = config.NormEpsilon,
                ["rope_theta"] = config.RopeTheta,
                ["hidden_act"] = "silu",
                ["tie_word_embeddings"] = config.TiedEmbeddings,
            };
        if (!config.HasMlp)
        {
            json["headlens_attention_only"] = true;
        }

        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    public static ModelConfig ParseConfig(string path)
    {
        string file = Path.GetFileName(Path.GetDirectoryName(path) ?? "") + "/config.json";
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException error)
        {
            throw new HeadLensException($"{file}: malformed JSON ({error.Message.Split('.')[0]})");
        }

        if (root is not JsonObject json)
        {
            throw new HeadLensException($"{file}: not a JSON object");
        }

        int Int(params string[] names)
        {
            foreach (string name in names)
            {
                if (json[name] is JsonValue value && value.TryGetValue(out int result))
                {
                    return result;
                }
            }

            throw new HeadLensException($"{file}: missing integer field '{names[0]}'");
        }

        float Float(string name, float fallback) =>
            json[name] is JsonValue value && value.TryGetValue(out double result) ? (float)result : fallback;

        bool Bool(string name, bool fallback) =>
            json[name] is JsonValue value && value.TryGetValue(out bool result) ? result : fallback;

        string type = json["model_type"]?.GetValue<string>() ?? "";
        bool attentionOnly = Bool("headlens_attention_only", false);
        ModelConfig config = type switch
        {
            "gpt2" => new ModelConfig
            {
                Family = ModelFamily.Gpt2,
                VocabSize = Int("vocab_size"),
                ContextLength = Int("n_positions", "n_ctx"),
                Channels = Int("n_embd"),
                Layers = Int("n_layer"),
                Heads = Int("n_head"),
                KvHeads = Int("n_head"),
                HiddenChannels = json["n_inner"] is JsonValue inner && inner.TryGetValue(out int width) ? width : 4 * Int("n_embd"),
                NormEpsilon = Float("layer_norm_epsilon", 1e-5f),
                TiedEmbeddings = Bool("tie_word_embeddings", true),
                HasMlp = !attentionOnly,
            },
            "llama" => new ModelConfig
            {
                Family = ModelFamily.Llama,
                VocabSize = Int("vocab_size"),
                ContextLength = Int("max_position_embeddings"),
                Channels = Int("hidden_size"),
                HiddenChannels = Int("intermediate_size"),
                Layers = Int("num_hidden_layers"),
                Heads = Int("num_attention_heads"),
                KvHeads = json["num_key_value_heads"] is null ? Int("num_attention_heads") : Int("num_key_value_heads"),
                NormEpsilon = Float("rms_norm_eps", 1e-6f),
                RopeTheta = Float("rope_theta", 10000f),
                TiedEmbeddings = Bool("tie_word_embeddings", false),
                HasMlp = !attentionOnly,
            },
            _ => throw new HeadLensException($"{file}: model_type '{type}' is not supported (gpt2, llama)"),
        };
        return config.Validated(file);
    }
}
