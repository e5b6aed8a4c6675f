/*
 * registry.c - every layer kind, one line each. The spec parser finds
 * words here; net.c finds a layer's table by its kind.
 */
#include "layer.h"

#include <stdio.h>
#include <string.h>

static const bp_layer_ops *const REGISTRY[] = {
    &bp_dense_ops,   &bp_identity_ops,  &bp_sigmoid_ops, &bp_tanh_ops,
    &bp_relu_ops,    &bp_leaky_relu_ops, &bp_softmax_ops, &bp_dropout_ops,
    &bp_conv_ops,    &bp_maxpool_ops,   &bp_avgpool_ops, &bp_global_avgpool_ops,
    &bp_flatten_ops, &bp_batchnorm_ops, &bp_rnn_ops,     &bp_lstm_ops,
    &bp_gru_ops,     &bp_last_ops,      &bp_embedding_ops,
};
#define N_REGISTRY (sizeof REGISTRY / sizeof REGISTRY[0])

const bp_layer_ops *bp_layer_ops_find(const char *word, size_t len)
{
    for (size_t i = 0; i < N_REGISTRY; i++)
        if (strlen(REGISTRY[i]->word) == len && strncmp(REGISTRY[i]->word, word, len) == 0)
            return REGISTRY[i];
    return NULL;
}

const bp_layer_ops *bp_layer_ops_of(bp_layer_kind kind)
{
    for (size_t i = 0; i < N_REGISTRY; i++)
        if (REGISTRY[i]->kind == kind) return REGISTRY[i];
    return NULL;
}

void bp_layer_words(char *buf, size_t size)
{
    size_t len = 0;
    if (size) buf[0] = 0;
    for (size_t i = 0; i < N_REGISTRY && len < size; i++) {
        int k = snprintf(buf + len, size - len, "%s%s", i ? ", " : "", REGISTRY[i]->usage);
        if (k < 0) break;
        len += (size_t)k;
    }
}
