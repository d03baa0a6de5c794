from transformers import GenerationMixin
class CodecTTSDelayGenerationMixin(GenerationMixin):
    pass
