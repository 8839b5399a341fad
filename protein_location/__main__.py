"""`python -m protein_location {predict,score}`: use an exported model."""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _parser():
    parser = argparse.ArgumentParser(prog="python -m protein_location", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.ArgumentDefaultsHelpFormatter

    predict = commands.add_parser("predict", formatter_class=formatter,
                                  help="predict locations of a folder of raw images -> submission CSV")
    predict.add_argument("--model", required=True, help="SavedModel folder from train_keras.py --export")
    predict.add_argument("--images", required=True, help="folder of <Id>_<red|green|blue|yellow>.png files")
    predict.add_argument("--csv", default=None,
                         help="sample_submission.csv: predict its Ids in its order (default: every Id in --images, sorted)")
    predict.add_argument("--out", required=True, help="submission CSV to write (Id,Predicted)")
    predict.add_argument("--probabilities", default=None,
                         help="also write a CSV of all 28 probabilities per Id (columns: Id, the location names)")
    predict.add_argument("--batch-size", type=int, default=64, help="images per inference call")
    predict.add_argument("--tta", type=int, choices=[1, 8], default=1,
                         help="test-time augmentation: 8 averages the 8 flips/rotations of each image")

    score = commands.add_parser("score", formatter_class=formatter,
                                help="macro F1 of a submission against known labels (Id,Target)")
    score.add_argument("--submission", required=True, help="submission CSV (Id,Predicted)")
    score.add_argument("--truth", required=True, help="labels CSV (Id,Target), e.g. the synthetic test_labels.csv")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from data_prep.sources import SourceError, list_image_ids
    from protein_location import predict

    try:
        if args.command == "predict":
            if args.csv:
                ids = list(predict.read_csv(args.csv, ["Id"])["Id"])
            else:
                ids = list_image_ids(args.images)
            probabilities, label_matrix = predict.predict_images(args.model, args.images, ids, args.batch_size,
                                                                 args.tta)
            predict.write_submission(args.out, ids, label_matrix)
            if args.probabilities:
                predict.write_probabilities(args.probabilities, ids, probabilities)
            print(f"predict: {len(ids)} images{' (8x TTA)' if args.tta == 8 else ''} -> {args.out}")
        else:
            f1 = predict.score_submission(args.submission, args.truth)
            print(f"score: macro F1 {f1:.4f} ({args.submission} against {args.truth})")
    except (predict.PredictError, SourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
