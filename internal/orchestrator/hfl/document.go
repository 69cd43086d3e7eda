package hfl

import (
	"context"
	"encoding/json"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/model"
)

// ErrNoModel is the answer for a session without a model to download yet.
var ErrNoModel = silo.Errorf(silo.ECONFLICT, "this session has no model yet: wait until its first round completes")

// Document builds the downloadable model of an hfl session: the global
// model after its last completed round, or (best) after its best round.
func Document(ctx context.Context, db *sqlstore.DB, ss *sqlstore.StoredSession, best bool) (*model.Document, error) {
	if ss.Config.Type != silo.SessionHFL {
		return nil, silo.Errorf(silo.ECONFLICT, "session %s is a %s session: it trains no model", ss.ID, ss.Config.Type)
	}
	name, round := blobFinal, ss.Round
	if best {
		name, round = blobBest, ss.BestRound
	}
	if round == 0 {
		return nil, ErrNoModel
	}
	var st state
	if err := json.Unmarshal(ss.State, &st); err != nil {
		return nil, err
	}
	var prep model.Preprocessing
	if err := json.Unmarshal(st.Preprocessing, &prep); err != nil {
		return nil, err
	}
	b, err := db.SessionBlob(ctx, ss.ID, name)
	if silo.ErrorCode(err) == silo.ENOTFOUND {
		return nil, ErrNoModel
	} else if err != nil {
		return nil, err
	}
	p, err := ml.ParseParams(b)
	if err != nil {
		return nil, err
	}
	return model.New(model.Spec(&ss.Config, &prep), prep, p, model.Metadata{Session: ss.ID, SessionName: ss.Name, Round: round, Best: best,
		Metrics: ss.Latest, Datasets: ss.Config.Datasets, EpsilonSpent: ss.EpsilonSpent, CreatedAt: ss.UpdatedAt})
}
